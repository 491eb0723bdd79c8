"""Response criteria. The registry of whole-patient criteria arrives with the criteria engine."""
