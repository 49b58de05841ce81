"""Engines are the only code that talks to a model."""
