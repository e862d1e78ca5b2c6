"""Samplers: ``init(x0) -> state`` and ``step(state, *, generator) -> (state, info)``.

Block Gibbs for layered binary models, Langevin dynamics and MALA for differentiable
energies (eager, or compiled in blocks of steps), SGLD as a posterior sampler (a torch
optimizer, or many small chains compiled), parallel tempering for PCD's negative phase, the
replay buffer of persistent/JEM training, and step-size schedules.
"""

from ebmlab.samplers.base import Sampler, run_chain
from ebmlab.samplers.bm_gibbs import BMGibbs, BMGibbsState
from ebmlab.samplers.compiled_chain import CompiledChain, CompiledChainState
from ebmlab.samplers.dbm_gibbs import DBMBlockGibbs, DBMGibbsState, sample_dbm
from ebmlab.samplers.gibbs import BlockGibbs, GibbsState, sample_visible
from ebmlab.samplers.langevin import Langevin, LangevinState, energy_and_grad
from ebmlab.samplers.mala import MALA, MALAState
from ebmlab.samplers.parallel_sgld import ParallelSGLD, SGLDChains
from ebmlab.samplers.precision import autocast_energy
from ebmlab.samplers.replay_buffer import ClassGaussianInit, GaussianInit, ReplayBuffer, UniformInit
from ebmlab.samplers.schedules import ConstantSchedule, PolynomialDecay
from ebmlab.samplers.sgld import SGLD, PreconditionedSGLD, SampleCollector
from ebmlab.samplers.tempering import ParallelTempering, TemperingState, temperature_ladder

__all__ = [
    "MALA",
    "SGLD",
    "BMGibbs",
    "BMGibbsState",
    "BlockGibbs",
    "CompiledChain",
    "CompiledChainState",
    "DBMBlockGibbs",
    "DBMGibbsState",
    "ClassGaussianInit",
    "ConstantSchedule",
    "GaussianInit",
    "GibbsState",
    "Langevin",
    "LangevinState",
    "MALAState",
    "ParallelSGLD",
    "ParallelTempering",
    "PolynomialDecay",
    "PreconditionedSGLD",
    "ReplayBuffer",
    "SGLDChains",
    "SampleCollector",
    "TemperingState",
    "Sampler",
    "UniformInit",
    "autocast_energy",
    "energy_and_grad",
    "run_chain",
    "sample_dbm",
    "sample_visible",
    "temperature_ladder",
]
