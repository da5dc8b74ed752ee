"""The benchmark harness and its engines: built alike, outputs checked, timed side by side."""
