"""The credit pipeline of StepOPSD, one module per stage, in the order data flows through it:

================  ==========================================================================
segment.py        target spans per step -> target mask and step ids          (pure)
hindsight.py      the hindsight block from a successful peer of the group    (pure text)
teacher.py        the stale (or live) teacher snapshot
rescore.py        teacher log-probs under hindsight -> Delta, Eq. 2          (the model boundary)
shaping.py        GRPO advantage, Eq. 3-4, the per-step budget               (pure)
oracle.py         Delta from the env's mistake labels (upper bound, credit audit ground truth)
peer_diff.py      Delta from the actions that differ from the peer's (a model-free baseline)
gigpo.py          the GiGPO baseline: step advantages from anchor states (no teacher)
advantage.py      the stage: ADVANTAGE_METHODS registry and compute_advantages
diagnostics.py    what the credit looked like (metrics)
loss.py           PPO-clip surrogate + KL + entropy                          (pure)
================  ==========================================================================

docs/algorithm.md maps each equation to its function and test.
"""
