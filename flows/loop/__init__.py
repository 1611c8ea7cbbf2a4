"""The closed loop: the demo, the latency exporter, the experiments, the stand-in policy and the world."""
