"""Robutler platform: the ``auth`` and ``payments`` skills, ``@pricing`` for tools, and the
self-hosted platform service they can talk to (:mod:`robutler_skill_platform.service`: users,
API keys, RS256 payment tokens, a double-entry payments ledger on PostgreSQL).

Registered through the ``robutler`` entry point, as any skill package: an agents file names
the skills ``auth`` and ``payments``.
"""

from robutler_core import hookimpl

from .auth import AuthSkill
from .payments import PaymentRequired, PaymentSkill
from .pricing import PricingInfo, pricing

__all__ = ["AuthSkill", "PaymentRequired", "PaymentSkill", "PricingInfo", "pricing"]


@hookimpl
def register_skills(register):
    register(AuthSkill, name="auth")
    register(PaymentSkill, name="payments")
