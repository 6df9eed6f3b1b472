"""Parameter sweeps and Ray Tune searches over the one fit loop."""
