"""Mechanisms shared by every registry service. No business rules live here."""
