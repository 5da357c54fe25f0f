"""Stores persist run records; the service layer owns every rule about them."""
