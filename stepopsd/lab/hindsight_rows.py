"""SFT rows that teach a small model to read a hindsight block, as the teacher of Eq. 2 must.

A pretrained LLM reads "<hindsight> ... a successful peer's trajectory ... </hindsight>" and
follows it without training. A ~1M-parameter model built from scratch has never seen such a
block, so on CPU its teacher gap would measure an out-of-distribution shift, not "what a
successful peer knew". With ``SFTConfig.hindsight_rows`` the warm start also trains on every
expert step with the exact block the teacher is shown placed before it (context, block,
response: the teacher's own window), so the tiny teacher learns to copy what the peer did.
Off by default: real models do not need it.

Which peer a row shows (``SFTConfig.hindsight_peer``, the keys of ``ROW_PEER_RULES``):

* ``self_if_alone`` (the default): another won episode of the same task among the warm start's
  won episodes, else the episode itself. The warm start plays each scene once, so a row usually
  shows its own episode: the tiny teacher learns to copy the peer step for step.
* ``other_episode``: always a different won episode of the same scene (same ``task_id``, other
  actions), never the episode itself; the rows of a scene without one are left out. The warm
  start replays each won scene with the expert slipping once (:func:`slip_replays`): at its first
  ``sft.careless_verb`` command with a wrong alternative it takes a random wrong one, and the env's
  reactive expert recovers from it (ErrandChain: return the parcel, take the right one). Same
  scene, won, and two steps longer from the slip on, so the peer's steps no longer line up with
  the row's: the teacher learns to read what the peer finally did at this point of the task
  rather than to copy step k. The replays are peers only; SFT never trains on them. An env whose
  expert is a plan, not reactive (``info["expert_action"]``), gets no slip and so no such rows.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from stepopsd.algo.hindsight import peer_hindsight_block
from stepopsd.lab.careless import careless_action
from stepopsd.lab.sft import expert_responder
from stepopsd.policy import Policy
from stepopsd.rollout import Responder, RolloutConfig, Task, TurnRequest, rollout_in_chunks
from stepopsd.trajectory import Step, Trajectory


def peer_for(traj: Trajectory, successes: Sequence[Trajectory]) -> Trajectory:
    """Another successful trajectory of the same task if there is one, else ``traj`` itself."""
    return next((s for s in successes if s.task_id == traj.task_id and s is not traj), traj)


def other_episode_peer(traj: Trajectory, candidates: Sequence[Trajectory]) -> Trajectory | None:
    """The first won episode of ``traj``'s task among ``candidates`` whose actions differ from ``traj``'s, else None.

    Episodes are told apart by what they did, not by id: a replay of a task may carry the id of its first play.
    """
    actions = [step.action for step in traj.steps]
    return next((c for c in candidates if c.success and c.task_id == traj.task_id
                 and [step.action for step in c.steps] != actions), None)


@dataclass(frozen=True)
class RowPeerRule:
    """Where a hindsight row's peer comes from."""

    choose: Callable[[Trajectory, Sequence[Trajectory]], Trajectory | None]  # (episode, candidates) -> peer; None: no rows
    replays: bool  # the candidates are the won scenes' slip replays (:func:`slip_replays`), not the won episodes


ROW_PEER_RULES = {
    "self_if_alone": RowPeerRule(peer_for, replays=False),
    "other_episode": RowPeerRule(other_episode_peer, replays=True),
}


def slip_responder(expert: Responder, verb: str, seed: int) -> Responder:
    """``expert`` (a scripted responder reading ``info["expert_action"]``), except that each episode's first
    ``verb`` command that has a wrong alternative becomes a random admissible wrong one, seeded by the task."""
    slipped: set[int] = set()

    def slip(request: TurnRequest) -> TurnRequest:
        if "valid_action" not in request.info:  # a reset's info: a new episode in this slot
            slipped.discard(request.episode)
        action = request.info.get("expert_action")
        if request.episode in slipped or action is None:
            return request
        rng = random.Random(f"{seed}/{request.info.get('task_id')}")
        wrong = careless_action(action, request.info.get("admissible_actions", ()), verb, rng)
        if wrong == action:
            return request
        slipped.add(request.episode)
        return dataclasses.replace(request, info={**request.info, "expert_action": wrong})

    return lambda requests: expert([slip(request) for request in requests])


def slip_replays(policy: Policy, envs: Sequence, tasks: Sequence[Task], rollout: RolloutConfig, verb: str,
                 seed: int) -> list[Trajectory]:
    """The expert's episodes of ``tasks`` with one recovered slip each (:func:`slip_responder`), won or lost."""
    respond = slip_responder(expert_responder(policy, envs[0].unwrapped.protocol), verb, seed)
    return rollout_in_chunks(policy, envs, tasks, rollout, respond=respond)


def hindsight_sft_trajectories(
    trajectories: Sequence[Trajectory],
    tokenize: Callable[[str], Sequence[int]],
    *,
    peers: Sequence[Trajectory] | None = None,
    peer_rule: str = "self_if_alone",
    peer_token_budget: int = 1024,
    correctness_line: bool = True,
    peer_view: str = "steps",
) -> list[Trajectory]:
    """One single-step trajectory per step of each successful, token-exact trajectory:
    token_ids = the step's context + the hindsight block (a successful peer of the same task,
    as a failed trajectory's teacher sees it) + the step's response, trainable on the response.

    The peer is chosen by ``ROW_PEER_RULES[peer_rule]`` among the successful ``peers`` (default:
    the successful ``trajectories`` themselves); a trajectory without one gives no rows.
    """
    successes = [t for t in trajectories if t.success and t.token_ids]
    candidates = successes if peers is None else [p for p in peers if p.success]
    choose = ROW_PEER_RULES[peer_rule].choose
    rows: list[Trajectory] = []
    for traj in successes:
        peer = choose(traj, candidates)
        if peer is None:
            continue
        block = peer_hindsight_block(peer, "incorrect" if correctness_line else None,
                                     peer_token_budget, lambda text: len(tokenize(text)), peer_view)
        hindsight_ids = list(tokenize(block))
        for step in traj.steps:
            if step.response_token_start is None:
                continue
            context = list(traj.token_ids[step.context_start:step.response_token_start])
            response = slice(step.response_token_start, step.response_token_end)
            start = len(context) + len(hindsight_ids)
            rows.append(Trajectory(
                trajectory_id=f"{traj.trajectory_id}/hindsight/{step.index}", task_id=traj.task_id,
                env_id=traj.env_id, group_id=traj.group_id, prompt=traj.prompt,
                steps=(Step(index=0, response=step.response, thought=step.thought, action=step.action,
                            observation="", response_token_start=start,
                            response_token_end=start + len(traj.token_ids[response])),),
                reward=traj.reward, success=True,
                token_ids=tuple(context + hindsight_ids) + traj.token_ids[response],
                trainable_mask=(False,) * start + traj.trainable_mask[response],
                behaviour_logprobs=(0.0,) * start + traj.behaviour_logprobs[response] if traj.behaviour_logprobs else (),
                task_type=traj.task_type, metadata={"hindsight_row": True},
            ))
    return rows
