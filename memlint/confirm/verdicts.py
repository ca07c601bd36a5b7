"""Per-finding verdicts: did the measured run bear out the finding's premise?

Every built-in finding that carries a time (ML101-ML107) rests on one premise: its nodes' time is
set by the bytes they move, not by their arithmetic. Over the finding's measured nodes, with T
their measured time, C their roofline compute time (FLOPs / peak) and M their roofline memory
time (bytes / bandwidth):

    compute share = C / T   (achieved FLOP rate / compute peak)
    memory share  = M / T   (achieved bandwidth / memory bandwidth)

- confirmed: compute share <= 0.5 (the arithmetic units were idle at least half the time) and
  memory share >= max(0.25, compute share) (the run moved its bytes at a quarter of the memory
  roof or better, and bandwidth is the larger share of the roof);
- not confirmed: compute share > 0.5 (compute-bound in practice), or memory share under 0.25
  (neither roof explains the time: per-kernel overhead, latency or a slow kernel does);
- not measured: no time to check (graph-wide findings such as capacity), or none of its nodes
  ran a kernel of its own.

A plugin's timed finding is judged by the same test. A memory share above 1 (faster than the
memory roof) still confirms the premise: the operands were cache-resident, so the predicted
time is an overestimate, which the reason says.
"""

from __future__ import annotations

from collections.abc import Mapping

from memlint import units
from memlint.core.measurement import FindingCheck, NodeMeasurement, Verdict
from memlint.findings import Finding

COMPUTE_SHARE_MAX = 0.5
MEMORY_SHARE_MIN = 0.25


def judge(
    finding: Finding,
    measured: Mapping[str, NodeMeasurement],
    optimised_s: float | None = None,
) -> FindingCheck:
    """The verdict on one finding from the measured nodes (by name)."""
    if finding.time_s is None or not finding.nodes:
        return FindingCheck(
            finding, Verdict.NOT_MEASURED, "about the graph as a whole: there is no node time to "
            "measure",
        )
    got = [measured[name] for name in finding.nodes if name in measured]
    measured_s = sum(node.measured_s for node in got)
    if not got or measured_s <= 0:
        return FindingCheck(
            finding, Verdict.NOT_MEASURED,
            f"none of its {len(finding.nodes)} node(s) ran a kernel of its own in onnxruntime "
            "(folded at load or metadata only)",
        )
    predicted_s = sum(node.predicted_s for node in got)
    compute = sum(node.compute_time_s for node in got) / measured_s
    memory = sum(node.memory_time_s for node in got) / measured_s
    shares = (
        f"achieved {units.percent(memory)} of the memory bandwidth and {units.percent(compute)} "
        f"of the compute peak; {units.seconds(measured_s)} measured, "
        f"{units.seconds(predicted_s)} predicted"
    )
    if len(got) < len(finding.nodes):
        shares += f" ({len(got)} of {len(finding.nodes)} nodes measured)"
    if compute > COMPUTE_SHARE_MAX:
        verdict, reason = Verdict.NOT_CONFIRMED, f"compute-bound in the run: {shares}"
    elif memory < max(MEMORY_SHARE_MIN, compute):
        verdict = Verdict.NOT_CONFIRMED
        reason = f"neither roof explains the time (overhead or latency does): {shares}"
    else:
        verdict, reason = Verdict.CONFIRMED, f"memory-bound as predicted: {shares}"
        if memory > 1:
            reason += "; faster than the memory roof, so its operands stayed in cache"
    return FindingCheck(
        finding=finding,
        verdict=verdict,
        reason=reason,
        predicted_s=predicted_s,
        measured_s=measured_s,
        optimised_s=optimised_s,
        compute_share=compute,
        memory_share=memory,
        nodes_measured=len(got),
    )
