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

Whose steps (``SFTConfig.hindsight_contexts``): ``won``, the won expert episodes' (above), or
``careless``, every step of the careless demonstrator's episodes with the expert's action in that state
as the target (:func:`corrected_rows`), a share of them shown a parcel-swapped peer whose choice is the
target (``SFTConfig.hindsight_swap``).
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from stepopsd.algo.hindsight import peer_hindsight_block, render_peer
from stepopsd.lab.careless import careless_action
from stepopsd.lab.sft import expert_responder, expert_sample, expert_trajectories
from stepopsd.policy import Policy
from stepopsd.rollout import Responder, RolloutConfig, Task, TurnRequest, rollout_in_chunks
from stepopsd.trajectory import Step, Trajectory


def peer_for(traj: Trajectory, successes: Sequence[Trajectory]) -> Trajectory:
    """Another successful trajectory of the same task if there is one, else ``traj`` itself."""
    return next((s for s in successes if s.task_id == traj.task_id and s is not traj), traj)


def other_won_episodes(traj: Trajectory, candidates: Sequence[Trajectory]) -> list[Trajectory]:
    """The won episodes of ``traj``'s task among ``candidates`` whose actions differ from ``traj``'s, in order.

    Episodes are told apart by what they did, not by id: a replay of a task may carry the id of its first play.
    """
    actions = [step.action for step in traj.steps]
    return [c for c in candidates if c.success and c.task_id == traj.task_id
            and [step.action for step in c.steps] != actions]


def other_episode_peer(traj: Trajectory, candidates: Sequence[Trajectory]) -> Trajectory | None:
    """The first of :func:`other_won_episodes`, else None."""
    return next(iter(other_won_episodes(traj, candidates)), None)


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


def careless_replays(policy: Policy, envs: Sequence, tasks: Sequence[Task], rollout: RolloutConfig,
                     draws: int) -> list[Trajectory]:
    """The env's careless demonstrator on ``tasks`` again, once per careless draw 1..``draws`` (reset option
    ``careless_draw``: ErrandChain's other careless errands of the same scene), won or lost. Its wins hold
    what a policy cloned from it wins with (a wrong take, a refused delivery, the return, the right take),
    the peers RL's groups show the teacher."""
    replays = [dataclasses.replace(task, options={**task.options, "careless": True, "careless_draw": draw})
               for draw in range(1, draws + 1) for task in tasks]
    return expert_trajectories(policy, envs, replays, rollout, careless_choice="env")


TAKE = re.compile(r"^take parcel (\d+)\b")
PARCEL_NUMBER = re.compile(r"\bparcel (\d+)\b")


def swapped_parcels(peer: Trajectory, seed: int) -> Trajectory:
    """``peer`` as its hindsight block would show it had it taken other parcels: a null for the audit.

    Each ``take parcel N`` becomes ``take parcel M``, M drawn (seeded by ``seed`` and the peer's id)
    among the other parcel numbers the peer's text names (N + 1 if it names none). M replaces N in
    the thought, response and action of the take and of the steps after it, up to the last one
    before the next take whose action names parcel N (its deliver, return or move), in the
    first mention of parcel N in those steps' observations (the held parcel; a counter's listing
    after it stays) and in their ``info["outcome"]`` (the delivery, for the ``outcomes`` view).
    Everything else, token ids included, is the peer's: the swap is for rendering.
    """
    numbers = sorted({int(n) for n in PARCEL_NUMBER.findall(render_peer(peer))})
    rng = random.Random(f"{seed}/{peer.trajectory_id}")
    steps = list(peer.steps)
    takes = [k for k, step in enumerate(steps) if TAKE.match(step.action.strip())]
    for i, first in enumerate(takes):
        taken = int(TAKE.match(steps[first].action.strip()).group(1))
        swapped = rng.choice([n for n in numbers if n != taken] or [taken + 1])
        held = re.compile(rf"\bparcel {taken}\b")
        following = range(first, takes[i + 1] if i + 1 < len(takes) else len(steps))
        last = max(k for k in following if held.search(steps[k].action))
        for k in range(first, last + 1):
            step, new = steps[k], f"parcel {swapped}"
            info = {**step.info, "outcome": held.sub(new, step.info["outcome"])} if "outcome" in step.info else step.info
            steps[k] = dataclasses.replace(step, thought=held.sub(new, step.thought), action=held.sub(new, step.action),
                                           response=held.sub(new, step.response),
                                           observation=held.sub(new, step.observation, count=1), info=info)
    return dataclasses.replace(peer, steps=tuple(steps))


def hindsight_row(traj: Trajectory, step: Step, hindsight_ids: Sequence[int], response: Step,
                  response_ids: Sequence[int]) -> Trajectory:
    """A single-step trajectory: ``step``'s context in ``traj`` + ``hindsight_ids`` + ``response_ids``
    (the text of ``response``), trainable on the response only."""
    context = list(traj.token_ids[step.context_start:step.response_token_start])
    start = len(context) + len(hindsight_ids)
    return Trajectory(
        trajectory_id=f"{traj.trajectory_id}/hindsight/{step.index}", task_id=traj.task_id,
        env_id=traj.env_id, group_id=traj.group_id, prompt=traj.prompt,
        steps=(Step(index=0, response=response.response, thought=response.thought, action=response.action,
                    observation="", response_token_start=start, response_token_end=start + len(response_ids)),),
        reward=traj.reward, success=traj.success,
        token_ids=tuple(context) + tuple(hindsight_ids) + tuple(response_ids),
        trainable_mask=(False,) * start + (True,) * len(response_ids),
        behaviour_logprobs=(0.0,) * (start + len(response_ids)) if traj.behaviour_logprobs else (),
        task_type=traj.task_type, metadata={"hindsight_row": True},
    )


def _own_response(traj: Trajectory, step: Step) -> tuple[Step, Sequence[int]]:
    return step, traj.token_ids[step.response_token_start:step.response_token_end]


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
        rows += [dataclasses.replace(hindsight_row(traj, step, hindsight_ids, *_own_response(traj, step)), success=True)
                 for step in traj.steps if step.response_token_start is not None]
    return rows


def peer_choice(peer: Trajectory, errand: int, verb: str) -> str | None:
    """The peer's last ``verb`` action in errand ``errand`` (``info["errand"]``, ErrandChain's): the choice it kept."""
    return next((step.action for step in reversed(peer.steps)
                 if step.info.get("errand") == errand and step.action.split(" ", 1)[0] == verb), None)


def expert_response(policy: Policy, protocol) -> Callable[[str], tuple[Step, Sequence[int]]]:
    """action -> the scripted expert's response to it (:func:`stepopsd.lab.sft.expert_sample`) as a step and its token ids."""
    def respond(action: str) -> tuple[Step, Sequence[int]]:
        sample = expert_sample(policy, protocol, action)
        parsed = protocol.parse(sample.text)
        return Step(index=0, response=sample.text, thought=parsed.thought, action=parsed.action,
                    observation=""), sample.token_ids

    return respond


def corrected_rows(
    episodes: Sequence[Trajectory],
    peers: Sequence[Trajectory],
    tokenize: Callable[[str], Sequence[int]],
    respond: Callable[[str], tuple[Step, Sequence[int]]],  # action -> the expert's response: its step and token ids
    *,
    verb: str,
    swap_share: float = 0.0,
    seed: int = 0,
    peer_token_budget: int = 1024,
    correctness_line: bool = True,
    peer_view: str = "steps",
) -> list[Trajectory]:
    """One row per step of each token-exact episode (a careless demonstrator's): the step's context, the
    block its teacher is shown (the episode's correctness, another won episode of the scene drawn among
    ``peers``), and as the target the expert's action in that state (``expert_action``),
    the right choice where the episode slipped (:func:`expert_response` renders it).

    In a ``swap_share`` of the episodes (drawn with ``seed``) the block shows the peer with its parcel
    choices swapped (:func:`swapped_parcels`, the audit's null) and each ``verb``
    target is the swapped peer's kept choice in that errand (:func:`peer_choice`): there the peer alone
    tells the target, so a tiny teacher must read the peer rather than take the block as a cue to read
    the clue carefully (an LLM reads a peer without being trained to).
    """
    rng = random.Random(seed)
    rows: list[Trajectory] = []
    for traj in episodes:
        options = other_won_episodes(traj, peers)
        swapped = rng.random() < swap_share
        if not options or not traj.token_ids:
            continue
        peer = rng.choice(options)
        if swapped:
            peer = swapped_parcels(peer, seed)
        correctness = ("correct" if traj.success else "incorrect") if correctness_line else None
        block = peer_hindsight_block(peer, correctness, peer_token_budget, lambda text: len(tokenize(text)), peer_view)
        hindsight_ids = list(tokenize(block))
        for step in traj.steps:
            target = step.acted_on("expert_action")
            if step.response_token_start is None or target is None:
                continue
            if swapped and target.split(" ", 1)[0] == verb:
                target = peer_choice(peer, step.info.get("errand"), verb) or target
            response = _own_response(traj, step) if target == step.action else respond(target)
            rows.append(hindsight_row(traj, step, hindsight_ids, *response))
    return rows
