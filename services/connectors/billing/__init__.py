"""Billing connectors (Stripe)."""
