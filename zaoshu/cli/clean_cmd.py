"""Placeholder: this stage registers its commands here."""
