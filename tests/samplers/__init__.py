"""Tests of ebmlab.samplers: Gibbs, Langevin, MALA, SGLD, tempering, replay buffers."""
