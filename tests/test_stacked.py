"""K fast agents trained as one stack (``rltrain.stacked``) do what each does alone."""

from __future__ import annotations

import numpy as np
import pytest

from rltrain import compat
from rltrain.config import compose_config

compat.load()
from rltrain.agent import build_agent  # noqa: E402
from rltrain.fast import Streams  # noqa: E402
from rltrain.loop import DEFERRED  # noqa: E402
from rltrain.stacked import StackedTrainer, _flatten, stackable  # noqa: E402
from tests.test_fast import VARIANTS, fill, fresh_graph  # noqa: E402, F401 (a fixture)

STACK_VARIANTS = {  # every branch of the update: soft/hard, double, dueling avg/max, Huber
    **{name: VARIANTS[name][0] for name in ("soft-double-dueling", "hard-dueling-max-huber")},
    "soft-gradient-steps-2": ["agent.gradient_steps=2"],
    "hard-gradient-steps-3-double": ["agent.target_model_update=4", "agent.gradient_steps=3",
                                     "agent.enable_double_dqn=true"]}


@pytest.mark.parametrize("variant", STACK_VARIANTS)
def test_a_stacked_agent_steps_as_its_own_graph_does(variant: str) -> None:
    """Same weights, same batches: an agent in a stack of three gets exactly the losses,
    metrics, weights and target weights its own graph gives, step after step, whether the others
    train in the same call or not (a subset trains at some steps: as after an episode end,
    where keras-rl2 trains once more)."""
    cfg = compose_config(["agent.nb_steps_warmup=10", *STACK_VARIANTS[variant]]).agent
    own = build_agent(cfg, (4,), 2)
    stack = [build_agent(cfg, (4,), 2) for _ in range(3)]
    assert stackable(stack)
    stack[1].model.set_weights(own.model.get_weights())  # [1] starts as `own` (its target
    stack[1].sync_weights()  # too: the stack starts every target from the online weights)
    fill([own.memory, stack[1].memory], 200, seed=1)
    fill([stack[0].memory], 200, seed=2)
    fill([stack[2].memory], 200, seed=3)
    trainer = StackedTrainer(stack)
    for agent in [own, *stack]:
        agent.training = True
        agent.recent_observation, agent.recent_action = np.zeros(4, np.float32), 0
    for agent in stack:
        agent.attach()
    try:
        for step in range(100, 110):
            together = [stack[1], *([stack[0], stack[2]] if step % 3 else [stack[2]])]
            for agent in [own, *together]:
                agent.step = step
            for agent in (own, stack[1]):
                agent.memory.streams = Streams(step)  # the same batches for both
            expected = own.backward(0.5, terminal=False)
            assert all(a.backward(0.5, terminal=False) is DEFERRED for a in together)
            got = trainer.train(together)[0]
            np.testing.assert_array_equal(got, expected)
            np.testing.assert_array_equal(_flatten(stack[1].current_weights()),
                                          _flatten(own.model.get_weights()))
            np.testing.assert_array_equal(trainer.target(stack[1]),
                                          _flatten(own.target_model.get_weights()))
    finally:
        trainer.close()
    state = [np.ones(4, np.float32)]
    np.testing.assert_array_equal(stack[1].compute_q_values(state), own.compute_q_values(state))


def test_what_cannot_stack_trains_in_its_own_graph() -> None:
    """Different architectures, or stock keras-rl2 agents, do not stack."""
    small = build_agent(compose_config([]).agent, (4,), 2)
    wide = build_agent(compose_config(["agent.model.units=32"]).agent, (4,), 2)
    stock = build_agent(compose_config(["agent.impl=keras-rl"]).agent, (4,), 2)
    assert stackable([small]) and not stackable([small, wide]) and not stackable([stock])


def test_a_row_trains_bit_for_bit_the_same_whatever_stands_beside_it() -> None:
    """TensorFlow's CPU kernels round differently for different batch shapes; each agent
    of a stack has ops of its own shapes, so agent 0 alone, beside two others, or among
    six gets identical outputs from the same batches, step after step
    (with the batch shape varying, 1e-8 differences made seed 5 beside 6-8 leave its
    alone run's episodes after ~120 episodes)."""
    cfg = compose_config([]).agent
    first = build_agent(cfg, (4,), 2)
    weights = first.model.get_weights()
    trainers = {}
    for k in (1, 3, 6):
        agents = [build_agent(cfg, (4,), 2) for _ in range(k)]
        agents[0].model.set_weights(weights)
        agents[0].sync_weights()
        trainers[k] = StackedTrainer(agents)
    rng = np.random.default_rng(0)
    try:
        for _ in range(40):
            batch = rng.normal(size=(6, 32, 11)).astype(np.float32)
            batch[..., 8] = rng.integers(0, 2, size=(6, 32))
            rows = []
            for trainer in trainers.values():
                for agent, rows_of in zip(trainer.agents, batch, strict=False):
                    agent.pending_batch = rows_of
                rows.append(trainer.train(trainer.agents)[0])
            assert rows[0] == rows[1] == rows[2]
            weights_now = [_flatten(t.agents[0].current_weights()) for t in trainers.values()]
            assert all(np.array_equal(weights_now[0], w) for w in weights_now[1:])
    finally:
        for trainer in trainers.values():
            trainer.close()
