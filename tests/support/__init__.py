"""Test support: the Docker lab, fixtures and helpers shared by the test tiers."""
