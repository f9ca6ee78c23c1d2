"""The ``nli`` skill: this agent asks another agent, over HTTP, and pays it from the caller's
payment token, never more than it authorised.

Tool ``nli_tool(agent, message, authorized_amount=0.10)``:

1. ``agent`` is a name (from the ``agents`` config, or one the ``discovery`` skill returned) or
   a URL whose host is on the ``allowlist``. Private, loopback and link-local addresses are
   refused unless allowlisted (hosts or CIDR ranges).
2. ``authorized_amount`` (dollars) above ``max_authorized_amount`` is refused: the model is told.
3. A child token of exactly ``authorized_amount`` is carved out of the request's payment token
   (``POST /api/payments/delegate``, ``delegateTo`` = the callee's name); the caller's own token
   is never sent anywhere. Delegation depth is the token's ``max_depth``: a loop of agents
   calling each other stops there.
4. ``POST {agent url}/chat/completions`` (streamed) with ``X-Payment-Token: <child>`` and
   ``X-Origin-Agent: <this agent>``; the answer is the tool's result. No retry: a request that
   may have been charged is not sent twice. Past ``timeout`` seconds the call ends with a tool
   error.
5. The child token is released (``POST /api/payments/release``): what the callee did not spend
   goes back to the caller's token. The callee's settle is waited for (up to 5 s) so that the
   request's usage record (``kind="nli"``) carries what the callee really charged; that
   record is already paid through the delegation, so the ``payments`` skill does not charge it
   again.

Failures (refused agent, no payment token, delegation refused, callee errors, timeouts) are the
tool's result, never the end of the request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
from typing import Any
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pydantic

from robutler_core import tool
from robutler_core.errors import RobutlerError

from .client import PlatformConfig, PlatformSkill
from .money import to_dollars, to_micros

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

PAID_BY_DELEGATION = "paid_by_delegation"
"""Usage-record metadata key: the record was paid through a delegated token (not settled again)."""
SETTLE_WAIT = 5.0
"""Seconds to wait for the callee's settle before releasing the child token."""


class NLIConfig(PlatformConfig):
    """``api_key``: the agent owner's key; delegations are its calls. ``timeout`` here is one
    call to another agent (platform calls take 10 s at most)."""

    agents: dict[str, str] = pydantic.Field(default_factory=dict)
    """Known agents: name -> URL (``http://host:port/name``)."""
    allowlist: list[str] = pydantic.Field(default_factory=list)
    """Hosts or CIDR ranges that may be called even when private or loopback, and the only
    hosts a URL given to the tool may name."""
    max_authorized_amount: float = pydantic.Field(default=1.0, gt=0)
    """Dollars the model may authorise for one call at most."""
    timeout: float = pydantic.Field(default=60.0, gt=0)
    """Seconds one call to another agent may take."""


class NLIError(Exception):
    """Why an NLI call was not made or failed: the tool's result."""


class NLISkill(PlatformSkill):
    """Calls other agents and pays them by delegation (see the module docstring)."""

    config_model = NLIConfig

    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.hosts: set[str] = set()
        for entry in self.settings.allowlist:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.lower())
        self.http: httpx.AsyncClient | None = None

    platform_timeout = 10.0

    async def close(self) -> None:
        await super().close()
        if self.http is not None:
            await self.http.aclose()

    # --- where to call -----------------------------------------------------------------------

    def resolve(self, agent: str) -> tuple[str, str]:
        """``(name, url)`` of ``agent``: a configured or discovered name, or an allowlisted URL
        (its name is the URL's last path segment). NLIError otherwise."""
        if "://" in agent:
            host = (urlsplit(agent).hostname or "").lower()
            if not self._allowlisted(host):
                raise NLIError(f"refused: {agent} is not on this agent's allowlist")
            return agent.rstrip("/").rsplit("/", 1)[-1], agent.rstrip("/")
        url = self.settings.agents.get(agent)
        if url is None:
            for skill in (self.agent.skills.values() if self.agent else []):
                url = getattr(skill, "url_of", lambda name: None)(agent)
                if url:
                    break
        if not url:
            raise NLIError(f"unknown agent '{agent}': discover it first (discover_agents) or configure it")
        return agent, url.rstrip("/")

    def _allowlisted(self, host: str) -> bool:
        if host in self.hosts:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    async def check_address(self, url: str) -> None:
        """NLIError when ``url``'s host resolves to a private, loopback, link-local or
        reserved address that is not allowlisted."""
        host = (urlsplit(url).hostname or "").lower()
        if not host:
            raise NLIError(f"refused: {url} has no host")
        if self._allowlisted(host):
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise NLIError(f"cannot resolve {host}: {exc}") from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if not address.is_global and not self._allowlisted(str(address)):
                raise NLIError(f"refused: {host} is a private or loopback address ({address}) that is not allowlisted")

    # --- the tool ------------------------------------------------------------------------------

    @tool
    async def nli_tool(self, agent: str, message: str, authorized_amount: float = 0.10, context: Any = None) -> str:
        """Ask another agent and get its answer; it is paid from the caller's funds, at most
        `authorized_amount` dollars.

        Args:
            agent: the agent's name (as discover_agents returned it) or its URL.
            message: what to ask it, in plain words.
            authorized_amount: the most it may charge, in US dollars.
        """
        try:
            return await self._call(context, agent, message, authorized_amount)
        except NLIError as exc:
            return f"Error: {exc}"

    async def _call(self, context: Any, agent: str, message: str, authorized_amount: float) -> str:
        if not authorized_amount > 0:
            raise NLIError("authorized_amount must be more than 0")
        if authorized_amount > self.settings.max_authorized_amount:
            raise NLIError(
                f"refused: authorized_amount {authorized_amount} is more than this agent may authorise "
                f"({self.settings.max_authorized_amount} dollars); ask for less"
            )
        name, url = self.resolve(agent)
        await self.check_address(url)
        parent = context.payment_token if context is not None else None
        if not parent:
            raise NLIError("this request has no payment token to pay another agent with")
        amount = to_micros(round(authorized_amount, 6), field="authorized_amount")
        call_id = f"{context.request_id}:nli:{len(context.usage_records)}:{name}"
        try:
            child = await self.platform().call(
                "POST", "/api/payments/delegate",
                json={"parentToken": parent, "delegateTo": name, "amount": to_dollars(amount)},
                idempotency_key=f"{call_id}:delegate",
            )
        except RobutlerError as exc:
            raise NLIError(f"cannot pay agent '{name}': {exc.message}") from None
        try:
            async with asyncio.timeout(self.settings.timeout):
                answer = await self._ask(url, name, message, child["token"])
        except TimeoutError:
            answer = None
            error: str | None = f"agent '{name}' did not answer within {self.settings.timeout:g} s"
        except NLIError as exc:
            answer, error = None, str(exc)
        else:
            error = None
        finally:
            spent = await asyncio.shield(self._release(child, call_id))
        context.track_usage(
            spent / 1_000_000, f"agent {name} via NLI", kind="nli",
            metadata={"agent": name, "authorized": to_dollars(amount), PAID_BY_DELEGATION: True},
        )
        if error is not None:
            raise NLIError(error)
        return answer or ""

    async def _ask(self, url: str, name: str, message: str, token: str) -> str:
        """The callee's answer to ``message`` (streamed chat completion); NLIError on errors."""
        import httpx  # here: discovering the installed skills at start-up need not import it

        if self.http is None:
            self.http = httpx.AsyncClient(timeout=httpx.Timeout(self.settings.timeout))
        headers = {"X-Payment-Token": token, "X-Origin-Agent": self.agent.name if self.agent else ""}
        body = {"model": name, "messages": [{"role": "user", "content": message}], "stream": True}
        parts: list[str] = []
        try:
            async with self.http.stream("POST", f"{url}/chat/completions", json=body, headers=headers) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise NLIError(f"agent '{name}' answered {response.status_code}: {_error_message(response.text)}")
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[6:])
                    if "error" in event:
                        raise NLIError(f"agent '{name}' failed: {event['error'].get('message')}")
                    for choice in event.get("choices") or []:
                        parts.append((choice.get("delta") or {}).get("content") or "")
        except httpx.HTTPError as exc:
            raise NLIError(f"agent '{name}' cannot be reached: {type(exc).__name__}") from None
        return "".join(parts)

    async def _release(self, child: dict[str, Any], call_id: str) -> int:
        """Release the child token once the callee's lock is settled (or after
        :data:`SETTLE_WAIT`); returns what the callee spent, in micro-dollars."""
        client = self.platform()
        authorized = to_micros(child["balance"])
        deadline = asyncio.get_running_loop().time() + SETTLE_WAIT
        pause = 0.005
        while True:
            try:
                state = await client.call("POST", "/api/payments/verify", json={"token": child["token"]})
            except RobutlerError:
                break
            if to_micros(state["lockedAmountDollars"]) == 0 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)
        try:
            released = await client.call(
                "POST", "/api/payments/release", json={"token": child["token"]}, idempotency_key=f"{call_id}:release"
            )
        except RobutlerError as exc:
            logger.error("releasing delegated token %s failed: %s", child.get("token_id"), exc)
            return authorized
        return authorized - to_micros(released["releasedAmountDollars"])


def _error_message(text: str) -> str:
    try:
        return json.loads(text)["error"]["message"]
    except Exception:
        return text[:200]
