"""Robutler platform: the self-hosted platform service (:mod:`robutler_skill_platform.service`:
users, API keys, RS256 payment tokens, a double-entry payments ledger on PostgreSQL) and the
amounts it counts in (:mod:`robutler_skill_platform.money`)."""
