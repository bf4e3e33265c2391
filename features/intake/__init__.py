"""Intake: the data contract, the mapping of an administration's export onto it, and the gate."""
