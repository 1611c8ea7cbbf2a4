"""The Gymnasium env: checkers, determinism, masks, rewards, episode ends (MODEL.md §3)."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from ceenv import ENV_ID, ENV_ID_POD_NODE, ENV_ID_REACH_OBSERVATION
from ceenv.env import CloudEdgeEnv
from ceenv.observation import decode_action, encode_action
from tests.conftest import scenario_dir, workload_file


def make(scenario: str = "7-21", workload: str = "aggregator_sequential", **kwargs: object) -> CloudEdgeEnv:
    return CloudEdgeEnv(scenario_dir(scenario), workload_file(workload), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("env_id", [ENV_ID, ENV_ID_POD_NODE])
@pytest.mark.parametrize("scenario", ["7-21", "13-29"])
def test_passes_gymnasium_and_sb3_checkers_without_warnings(scenario: str, env_id: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Gymnasium's convention: an id older than the newest of its name (v2) says so when made.
        warnings.filterwarnings("ignore", message=".*is out of date.*")
        env = gym.make(
            env_id, scenario=str(scenario_dir(scenario)), workload=str(workload_file("chain")), render_mode="ansi"
        )
        check_env(env.unwrapped)
        version = env.unwrapped.layout.version
        sb3_check_env(make(scenario, observation_version=version), warn=True)


def _rollout(env: CloudEdgeEnv, seed: int, steps: int = 60) -> list[tuple[float, float]]:
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    trace = []
    for _ in range(steps):
        valid = np.flatnonzero(env.action_masks()[:-1])
        _, reward, terminated, truncated, info = env.step(int(valid[rng.integers(valid.size)]))
        trace.append((float(reward), info["latency_ms"]))
        if terminated or truncated:
            break
    return trace


def test_same_seed_gives_the_same_rollout() -> None:
    assert _rollout(make(), 7) == _rollout(make(), 7)
    assert _rollout(make(), 7) != _rollout(make(), 8)


def test_reward_is_latency_gain_minus_the_step_cost() -> None:
    env = make(step_cost_ms=1.25)
    _, info = env.reset(seed=1)
    before = info["latency_ms"]
    action = int(np.flatnonzero(env.action_masks()[:-1])[0])
    _, reward, terminated, truncated, info = env.step(action)
    assert reward == pytest.approx(before - info["latency_ms"] - 1.25)
    assert info["moves"] == 1 and not terminated and not truncated


def test_stop_terminates_with_zero_reward_and_keeps_the_placement() -> None:
    env = make()
    _, info = env.reset(seed=2)
    placement = env.simulator.placement()
    _, reward, terminated, truncated, after = env.step(env.layout.stop_action)
    assert (reward, terminated, truncated) == (0.0, True, False)
    assert env.simulator.placement() == placement
    assert after["latency_ms"] == info["latency_ms"]


def test_masked_actions_are_never_executed() -> None:
    env = make("13-29")
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(200):
        mask = env.action_masks()
        invalid = np.flatnonzero(~mask)
        action = int(invalid[rng.integers(invalid.size)])
        state = env.simulator.slot_node.copy(), env.simulator.free_cpu_millicores.copy()
        _, reward, terminated, _, info = env.step(action)
        assert info["invalid_action"] and reward == -env.step_cost_ms and not terminated
        np.testing.assert_array_equal(env.simulator.slot_node, state[0])
        np.testing.assert_array_equal(env.simulator.free_cpu_millicores, state[1])
        if env._steps >= env.max_steps - 1:
            env.reset()


def test_mask_forbids_pinned_services_client_layer_same_node_and_full_nodes() -> None:
    env = make()
    env.reset(seed=4)
    sim, layout = env.simulator, env.layout
    mask = env.action_masks()
    assert mask[layout.stop_action]
    for action in np.flatnonzero(mask[:-1]):
        slot, node = decode_action(layout, int(action))  # type: ignore[misc]
        service = int(layout.slot_service[slot])
        assert sim.slot_node[slot] >= 0 and sim.slot_node[slot] != node
        assert layout.service_movable[service]
        assert layout.node_layers[node] != "client"
        assert sim.free_cpu_millicores[node] >= sim.request_cpu_millicores[service]
        assert sim.free_memory_bytes[node] >= sim.request_memory_bytes[service]
    client_slot = 0
    assert not any(mask[encode_action(layout, client_slot, n)] for n in range(layout.node_count))


def test_episode_is_truncated_after_max_steps() -> None:
    env = make(max_steps=5)
    env.reset(seed=5)
    flags = []
    for _ in range(5):
        valid = np.flatnonzero(env.action_masks()[:-1])
        _, _, terminated, truncated, _ = env.step(int(valid[0]))
        flags.append((terminated, truncated))
    assert flags[-1] == (False, True) and all(f == (False, False) for f in flags[:-1])


def test_resources_are_conserved_by_moves() -> None:
    env = make("13-29")
    env.reset(seed=6)
    sim = env.simulator
    for _ in range(30):
        valid = np.flatnonzero(env.action_masks()[:-1])
        env.step(int(valid[len(valid) // 2]))
        used = sim.conditions.cpu_millicores - sim.free_cpu_millicores
        assert used.sum() == pytest.approx(sim.request_cpu_millicores @ sim.counts.sum(axis=1))
        assert (sim.free_cpu_millicores >= 0).all() and (sim.free_memory_bytes >= 0).all()


class OnlyTheBestMove(gym.Wrapper[np.ndarray, Any, np.ndarray, Any]):
    """sb3-contrib's "mask all but the good action" env: the env's ``action_masks()`` allows only the move that
    lowers the latency most (the simulator's own answer), STOP and every other move masked off."""

    def action_masks(self) -> np.ndarray:
        env: CloudEdgeEnv = self.unwrapped  # type: ignore[assignment]
        sim = env.simulator
        moves = sim.distinct_moves()
        only_best = np.zeros_like(env.action_masks())
        only_best[encode_action(env.layout, *moves[int(np.argmin(sim.latency_after(moves)))])] = True
        return only_best


def test_masking_all_but_the_best_move_lets_an_untrained_maskable_policy_win() -> None:
    """sb3-contrib's test_invalid_actions: an untrained MaskablePPO acts at random among the actions its mask
    allows; given the env's ``action_masks()`` with only the best move left, it makes the best move every step."""
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.utils import get_action_masks

    env = OnlyTheBestMove(make("13-29"))
    observation, _ = env.reset(seed=7)
    model = MaskablePPO("MlpPolicy", env, n_steps=64, batch_size=64, seed=0, device="cpu")  # untrained
    sim = env.unwrapped.simulator  # type: ignore[attr-defined]
    start_ms = sim.latency_ms
    for step in range(5):
        best_ms = float(sim.latency_after(sim.distinct_moves()).min())
        assert best_ms < sim.latency_ms, f"step {step}: no move lowers the latency, pick another start state"
        action, _ = model.predict(observation, action_masks=get_action_masks(env), deterministic=False)
        observation, _, terminated, _, info = env.step(action)
        assert not terminated and not info["invalid_action"], f"step {step}: action {action} was not a valid move"
        assert info["latency_ms"] == pytest.approx(best_ms), f"step {step}: action {action} was not the best move"
    assert sim.latency_ms < start_ms


def test_nominal_mode_uses_the_largest_capacities() -> None:
    env = make(dynamic=False)
    env.reset(seed=0)
    assert env.simulator.conditions.cpu_millicores.tolist() == [7000, 7000, 4000, 4000, 2000, 2000, 2000]


def test_render_ansi_lists_every_node() -> None:
    env = make(render_mode="ansi")
    env.reset(seed=0)
    text = env.render()
    assert text is not None and all(name in text for name in env.layout.node_names)


def test_gym_make_without_arguments_runs_the_embedded_13_29_default() -> None:
    env = gym.make(ENV_ID)
    obs, _ = env.reset(seed=0)
    unwrapped = env.unwrapped
    assert isinstance(unwrapped, CloudEdgeEnv)
    assert unwrapped.scenario.name == "13-29" and unwrapped.workload.name == "aggregator_sequential"
    assert obs.shape == env.observation_space.shape
    check_env(unwrapped)


@pytest.mark.parametrize(("env_id", "version"), [(ENV_ID_REACH_OBSERVATION, 1), (ENV_ID, 3)])
def test_each_registered_id_has_the_spaces_its_docstring_states(env_id: str, version: int) -> None:
    env = gym.make(env_id, scenario=str(scenario_dir("7-21")), workload=str(workload_file("chain")))
    unwrapped = env.unwrapped
    assert isinstance(unwrapped, CloudEdgeEnv)
    n, p, s = unwrapped.layout.node_count, unwrapped.layout.slot_count, len(unwrapped.layout.service_names)
    size = {1: 2 * n + p * (n + 1), 3: 2 * n + p * (n + 1) + s * (n + 1) + n * p}[version]
    assert unwrapped.layout.version == version
    assert env.observation_space.shape == (size,)
    assert float(env.observation_space.low.min()) == (-1.0 if version == 3 else 0.0)  # type: ignore[attr-defined]
    assert env.action_space.n == n * p + 1  # type: ignore[attr-defined]
