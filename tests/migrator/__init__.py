"""Tests of the migrator: unit tests on plain data, and e2e tests on the local Kubernetes cluster."""
