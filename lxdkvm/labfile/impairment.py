"""What an impaired link is, as a value: packet loss, a rate, a delay and its jitter, read from text that a
lab file (a network's `impair:`) or `lxdkvm impair` gives, each with its unit and its bounds. Pure; the
planning is `lab.impair`, the kernel side `machine.impair`.

An impairment applies to what a host's link carries towards the host (the machine side of its veth on the
lab network's bridge): traffic between two impaired hosts meets it at each arrival.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LOSS = re.compile(r"^([0-9]{1,3}(?:\.[0-9]{1,2})?)%$")
RATE = re.compile(r"^([0-9]{1,7}(?:\.[0-9]{1,3})?)(bit|kbit|mbit|gbit)$", re.IGNORECASE)
DURATION = re.compile(r"^([0-9]{1,7}(?:\.[0-9]{1,3})?)(us|ms|s)$")
RATE_UNITS = {"bit": 1, "kbit": 1_000, "mbit": 1_000_000, "gbit": 1_000_000_000}
DURATION_US = {"us": 1, "ms": 1_000, "s": 1_000_000}
MIN_RATE, MAX_RATE = 8_000, 100_000_000_000  # 8kbit .. 100Gbit: below, one 1500-byte frame takes 1.5 s
MAX_DELAY_US = 60_000_000  # 60 s
KINDS = ("loss", "rate", "delay")  # what a machine may or may not do (`machine.impair.probe`)
SYNTAX = {
    "loss": "a share of packets dropped: 0.01% to 100%, e.g. 30% or 0.5%",
    "rate": "a rate in bit/s: 8kbit to 100Gbit, e.g. 2Mbit, 500kbit (units bit, kbit, Mbit, Gbit)",
    "delay": "a time: up to 60s, e.g. 20ms, 1.5s, 800us (units us, ms, s)",
    "jitter": "a time no longer than the delay, e.g. 5ms (units us, ms, s)",
    "": "give one or more of loss, rate and delay, e.g. {loss: 30%} or {rate: 2Mbit}",
}


class ImpairmentError(ValueError):
    """A value that is not an impairment: KEY is the one at fault, HINT what it takes."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key, self.hint = key, SYNTAX.get(key, "")


@dataclass(frozen=True)
class Impairment:
    loss_bp: int = 0  # basis points: 3000 is 30%
    rate_bit: int = 0  # bit/s; 0: not limited
    delay_us: int = 0
    jitter_us: int = 0

    @property
    def empty(self) -> bool:
        return not (self.loss_bp or self.rate_bit or self.delay_us)

    @property
    def kinds(self) -> tuple[str, ...]:
        """What the kernel must provide for it (`KINDS`)."""
        return tuple(k for k, on in zip(KINDS, (self.loss_bp, self.rate_bit, self.delay_us), strict=True) if on)

    def as_json(self) -> dict:
        out: dict = {}
        if self.loss_bp:
            out["loss_percent"] = self.loss_bp / 100
        if self.rate_bit:
            out["rate_bit_per_s"] = self.rate_bit
        if self.delay_us:
            out["delay_ms"] = self.delay_us / 1000
        if self.jitter_us:
            out["jitter_ms"] = self.jitter_us / 1000
        return out

    def text(self) -> str:
        """One line for people: `loss 30% · rate 2Mbit · delay 20ms ± 5ms`."""
        parts = [f"loss {_number(self.loss_bp / 100)}%"] if self.loss_bp else []
        parts += [f"rate {rate_text(self.rate_bit)}"] if self.rate_bit else []
        if self.delay_us:
            jitter = f" ± {duration_text(self.jitter_us)}" if self.jitter_us else ""
            parts.append(f"delay {duration_text(self.delay_us)}{jitter}")
        return " · ".join(parts) or "none"


def _number(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def rate_text(bit: int) -> str:
    for unit, size in (("Gbit", 10**9), ("Mbit", 10**6), ("kbit", 10**3)):
        if bit >= size:
            return f"{_number(bit / size)}{unit}"
    return f"{bit}bit"


def duration_text(us: int) -> str:
    return f"{_number(us / 1e6)}s" if us >= 1_000_000 else f"{_number(us / 1000)}ms" if us >= 1000 else f"{us}us"


def _shown(value: object) -> str:
    text = str(value)
    return repr(text[:40] + "…" if len(text) > 40 else text)


def loss(text: str) -> int:
    """Basis points of a loss such as `30%`."""
    found = LOSS.match(str(text))
    if not found:
        raise ImpairmentError("loss", f"{_shown(text)} is not a loss in percent")
    bp = round(float(found.group(1)) * 100)
    if not 1 <= bp <= 10_000:
        raise ImpairmentError("loss", f"{found.group(1)}% is not between 0.01% and 100%")
    return bp


def rate(text: str) -> int:
    """Bit/s of a rate such as `2Mbit`."""
    found = RATE.match(str(text))
    if not found:
        raise ImpairmentError("rate", f"{_shown(text)} is not a rate")
    bit = round(float(found.group(1)) * RATE_UNITS[found.group(2).lower()])
    if not MIN_RATE <= bit <= MAX_RATE:
        raise ImpairmentError("rate", f"{text} is not between 8kbit and 100Gbit")
    return bit


def duration(text: str, key: str = "delay") -> int:
    """Microseconds of a time such as `20ms`."""
    found = DURATION.match(str(text))
    if not found:
        raise ImpairmentError(key, f"{_shown(text)} is not a time")
    us = round(float(found.group(1)) * DURATION_US[found.group(2)])
    if not 1 <= us <= MAX_DELAY_US:
        raise ImpairmentError(key, f"{text} is not between 1us and 60s")
    return us


def parse(loss_text: str | None = None, rate_text_: str | None = None, delay: str | None = None,
          jitter: str | None = None) -> Impairment:
    """An impairment from its texts (None: not given); ImpairmentError on the first one at fault."""
    if jitter is not None and delay is None:
        raise ImpairmentError("jitter", "jitter needs a delay")
    found = Impairment(loss(loss_text) if loss_text is not None else 0,
                       rate(rate_text_) if rate_text_ is not None else 0,
                       duration(delay) if delay is not None else 0,
                       duration(jitter, "jitter") if jitter is not None else 0)
    if found.jitter_us > found.delay_us:
        raise ImpairmentError("jitter", f"jitter {jitter} is longer than the delay {delay}")
    if found.empty:
        raise ImpairmentError("", "an impairment needs at least one of loss, rate and delay")
    return found
