"""TVM: Relax import, the one pass pipeline, conv schedules and tiles, targets, build, artifacts."""
