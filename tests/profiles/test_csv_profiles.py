"""CSV profiles: header-driven reading, node / node type mapping, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.profiles.csv_profiles import read_csv_profile, read_csv_profiles
from flows.profiles.errors import ProfileError
from flows.profiles.hosts import CpuTypeResolver, load_node_types
from tests.profiles.conftest import EXAMPLE_CSVS, EXAMPLES, FIXTURES


def test_cpu_type_column_is_read_with_file_and_line_as_source(resolver: CpuTypeResolver) -> None:
    table = read_csv_profile(EXAMPLES / "cloud_cpu_type.csv", resolver)
    assert len(table) == 48
    assert set(table["cpu_type"]) == {0}
    assert table["source"][0].endswith("cloud_cpu_type.csv:2")
    assert (table["count"] == 1).all()


def test_node_column_maps_scenario_nodes_to_their_cpu_type_and_ignores_extra_columns(resolver: CpuTypeResolver) -> None:
    table = read_csv_profile(EXAMPLES / "edge4_by_node.csv", resolver)
    assert set(table["cpu_type"]) == {1}
    assert list(table.columns) == ["service", "cpu_type", "execution_time_ms", "count", "source"]


def test_node_type_column_and_count_column_are_honoured(resolver: CpuTypeResolver) -> None:
    table = read_csv_profile(EXAMPLES / "edge2_aggregates_by_node_type.csv", resolver)
    assert set(table["cpu_type"]) == {2}
    assert (table["count"] == 5).all()


def test_several_files_are_combined(resolver: CpuTypeResolver) -> None:
    table = read_csv_profiles(list(EXAMPLE_CSVS), resolver)
    assert len(table) == 48 + 48 + 12
    assert set(table["cpu_type"]) == {0, 1, 2}


def test_header_order_and_case_do_not_matter(tmp_path: Path, resolver: CpuTypeResolver) -> None:
    file = tmp_path / "p.csv"
    file.write_text("Execution_Time_MS, Service ,CPU_TYPE\n7.5,aggregator,1\n")
    table = read_csv_profile(file, resolver)
    assert table.loc[0, "service"] == "aggregator"
    assert table.loc[0, "cpu_type"] == 1
    assert table.loc[0, "execution_time_ms"] == 7.5


def test_empty_cells_become_nulls_for_the_validation_to_report(resolver: CpuTypeResolver) -> None:
    table = read_csv_profile(FIXTURES / "empty_cells.csv", resolver)
    assert table["cpu_type"].isna().sum() == 1
    assert table["service"].isna().sum() == 1


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.csv", "file is empty"),
        ("header_only.csv", "no measurements below the header"),
        (
            "wrong_columns.csv",
            "lacks the column(s) ['service', 'execution_time_ms', 'cpu_type (or node_type, or node)']",
        ),
        ("not_a_number.csv", "not_a_number.csv:2: column 'execution_time_ms': not a number: 'fast'"),
        ("unknown_node.csv", "unknown_node.csv:2: column 'node': unknown node 'rack-7-host'"),
        ("missing.csv", "file not found"),
    ],
)
def test_bad_csv_files_raise_a_clear_error_naming_file_and_fix(
    name: str, message: str, resolver: CpuTypeResolver
) -> None:
    with pytest.raises(ProfileError) as err:
        read_csv_profile(FIXTURES / name, resolver)
    assert message in str(err.value)
    assert name in str(err.value)


def test_negative_cpu_type_is_rejected(tmp_path: Path, resolver: CpuTypeResolver) -> None:
    file = tmp_path / "p.csv"
    file.write_text("service,cpu_type,execution_time_ms\naggregator,-1,7\n")
    with pytest.raises(ProfileError, match=r"p.csv:2: column 'cpu_type': '-1' is not an integer >= 0"):
        read_csv_profile(file, resolver)


def test_node_type_tables_load_from_json_and_csv(tmp_path: Path) -> None:
    assert load_node_types(FIXTURES / "node_types.json") == {"cloud-1": 0, "client-host": 1}
    csv_table = tmp_path / "nodes.csv"
    csv_table.write_text("node,cpu_type\nhost-a,2\n")
    assert load_node_types(csv_table) == {"host-a": 2}


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("", ".json", "file is empty"),
        ("{nope", ".json", "not valid JSON"),
        ('{"host": "fast"}', ".json", "CPU type must be an integer"),
        ("host,type\na,1\n", ".csv", "lacks the columns 'node' and 'cpu_type'"),
    ],
)
def test_bad_node_type_tables_are_clear_errors(tmp_path: Path, content: str, suffix: str, message: str) -> None:
    file = tmp_path / f"nodes{suffix}"
    file.write_text(content)
    with pytest.raises(ProfileError, match=message):
        load_node_types(file)


@pytest.mark.parametrize(
    ("row", "column", "text"),
    [
        ("aggregator,nan,5", "cpu_type", "nan"),
        ("aggregator,inf,5", "cpu_type", "inf"),
        ("aggregator,1e400,5", "cpu_type", "1e400"),
        ("aggregator,0,nan", "execution_time_ms", "nan"),
        ("aggregator,0,-inf", "execution_time_ms", "-inf"),
        ("aggregator,0,1e400", "execution_time_ms", "1e400"),
    ],
)
def test_non_finite_numbers_are_a_clear_error_naming_line_and_column(
    tmp_path: Path, resolver: CpuTypeResolver, row: str, column: str, text: str
) -> None:
    file = tmp_path / "p.csv"
    file.write_text(f"service,cpu_type,execution_time_ms\n{row}\n")
    with pytest.raises(ProfileError) as err:
        read_csv_profile(file, resolver)
    assert f"p.csv:2: column {column!r}: not a finite number: {text!r}; write a plain number" in str(err.value)


def test_infinite_count_is_a_clear_error(tmp_path: Path, resolver: CpuTypeResolver) -> None:
    file = tmp_path / "p.csv"
    file.write_text("service,cpu_type,execution_time_ms,count\naggregator,0,5,3\naggregator,0,5,inf\n")
    with pytest.raises(ProfileError, match=r"p.csv:3: column 'count': not a finite number: 'inf'"):
        read_csv_profile(file, resolver)


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("aggregator,0,5,\n", 2),  # a trailing comma on every row made pandas shift the columns
        ("aggregator,0,5\n\ndb,0,2,7\n", 4),  # the line is counted with the blank one
    ],
)
def test_a_row_with_more_fields_than_the_header_names_its_line(
    tmp_path: Path, resolver: CpuTypeResolver, body: str, line: int
) -> None:
    file = tmp_path / "p.csv"
    file.write_text("service,cpu_type,execution_time_ms\n" + body)
    with pytest.raises(ProfileError, match=rf"p.csv:{line}: 4 fields but the header names 3 columns; delete"):
        read_csv_profile(file, resolver)


def test_a_trailing_comma_on_the_header_too_keeps_the_columns_in_place(
    tmp_path: Path, resolver: CpuTypeResolver
) -> None:
    file = tmp_path / "p.csv"
    file.write_text("service,cpu_type,execution_time_ms,\naggregator,1,5,\n")
    table = read_csv_profile(file, resolver)
    assert (table.loc[0, "service"], table.loc[0, "cpu_type"], table.loc[0, "execution_time_ms"]) == (
        "aggregator",
        1,
        5.0,
    )


def test_node_type_tables_with_a_byte_order_mark_load(tmp_path: Path) -> None:
    csv_table = tmp_path / "nodes.csv"
    csv_table.write_text("node,cpu_type\nhost-a,2\n", encoding="utf-8-sig")
    json_table = tmp_path / "nodes.json"
    json_table.write_text('{"host-b": 1}', encoding="utf-8-sig")
    assert load_node_types(csv_table) == {"host-a": 2}
    assert load_node_types(json_table) == {"host-b": 1}
