"""Tuning: MetaSchedule search, conv tile search, their databases (databases/ holds the shipped ones)."""
