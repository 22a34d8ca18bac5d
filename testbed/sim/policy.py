"""The closed-loop hook: an external policy that decides every N-th AQM decision from the 24 logged fields.

The simulator never imports the model package. Anything with ``decide(fields) -> int`` (0 forward,
1 drop, 2 mark) and an integer attribute ``every`` can drive the router: it is asked for every
``every``-th AQM decision (the 1st, the ``every+1``-th, ...) and the AQM itself decides the rest.
``fields`` are exactly the 24 values the router would log for this packet, with ``dequeue_action``
set to 0 because the action is not known yet. The AQM then applies and logs the final action. A
"mark" for a packet that is not ECN-capable is applied as a drop (as a real AQM must).
"""

from __future__ import annotations

from typing import Protocol, Sequence

POLICY_FORWARD, POLICY_DROP, POLICY_MARK = 0, 1, 2


class Policy(Protocol):
    every: int

    def decide(self, fields: Sequence[int]) -> int: ...


class PolicyGate:
    """Counts AQM decisions and says which ones the policy takes."""

    __slots__ = ("policy", "every", "count", "asked")

    def __init__(self, policy: Policy):
        every = int(getattr(policy, "every", 1) or 1)
        if every < 1:
            raise ValueError(f"policy.every must be >= 1, got {every}")
        self.policy = policy
        self.every = every
        self.count = 0
        self.asked = 0

    def take(self) -> bool:
        """True when the current decision belongs to the policy (call once per AQM decision)."""
        c = self.count
        self.count = c + 1
        if c % self.every == 0:
            self.asked += 1
            return True
        return False

    def decide(self, fields: Sequence[int]) -> int:
        action = int(self.policy.decide(fields))
        if action not in (POLICY_FORWARD, POLICY_DROP, POLICY_MARK):
            raise ValueError(f"policy.decide returned {action!r}; it must return 0 (forward), 1 (drop) or 2 (mark)")
        return action


class BlobPolicy:
    """A deployable policy blob (:mod:`l4stb.policyblob`) as the simulator's policy: the ``policy`` AQM.

    It decides with the blob's integer evaluator, the Python twin of the kernel module's C evaluator, so the
    simulator and the router take the same decision on the same logged fields.
    """

    __slots__ = ("blob", "every", "decide")

    def __init__(self, blob, every: int = 1):
        self.blob = blob
        self.every = int(every)
        self.decide = blob.decide
