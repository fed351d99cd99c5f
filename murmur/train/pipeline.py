"""Pipeline parallelism applied from outside the model: stage modules and torch's schedules.

The model (``murmur.model.Transformer``) stays one plain module. This module cuts it into stages:
``split_model`` gives each pipeline rank the stage modules it runs (one, or ``v`` for the
interleaved schedules: rank r runs stages r, r + pp, r + 2 pp ...), each a :class:`Stage` holding
consecutive blocks, the embedding on the first stage and the final norm and output projection on
the last. A stage keeps the model's attribute names, so its parameter names are the full model's
(``layers.5.attention.wq.weight``): checkpoints written by stages load into the whole model and the
reverse (DCP reshards them). ``build_schedule`` wraps the stages in
``torch.distributed.pipelining`` stages and one of its schedules (GPipe, 1F1B, Interleaved1F1B,
InterleavedZeroBubble), with the cross-entropy on the last stage.

Tied embeddings: with pp > 1 the embedding (first stage) and the output projection (last stage)
live on different processes, so the last stage gets its own copy of the matrix, initialised equal;
``sync_tied_grads`` sums their gradients over the pipeline after backward, so both copies take the
same optimizer step and stay equal, as one shared matrix would. ``clip_grad_norm_`` in
``murmur.train.parallel`` counts that copy once.

Each stage composes with FSDP2/HSDP/DDP like the whole model (``parallelize`` on each stage, the
data-parallel dimensions of the mesh), so the mesh is ("pp", "dp_replicate", "dp_shard", "tp").
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from murmur.errors import ConfigError

SCHEDULE_CLASSES = {
    "gpipe": "ScheduleGPipe",
    "1f1b": "Schedule1F1B",
    "interleaved_1f1b": "ScheduleInterleaved1F1B",
    "zero_bubble": "ScheduleInterleavedZeroBubble",
}
INTERLEAVED = ("interleaved_1f1b", "zero_bubble")


class Stage(nn.Module):
    """Consecutive blocks of a Transformer, with the embedding (``first``) and the final norm and
    output projection (``last``). ``forward`` takes token ids on the first stage and the hidden
    states of the previous stage elsewhere; the last stage returns fp32 logits."""

    def __init__(self, model: nn.Module, layer_ids: list[str], first: bool, last: bool,
                 own_output: bool = False):
        super().__init__()
        self.cfg = model.cfg
        self.first, self.last = first, last
        if first:
            self.tok_embeddings = model.tok_embeddings
        self.layers = nn.ModuleDict({k: model.layers[k] for k in layer_ids})
        if last:
            self.norm = model.norm
            # A tied output matrix on another process than the embedding: an equal copy of its own.
            self.output = copy.deepcopy(model.output) if own_output else model.output
        self.register_buffer("rope_cos", model.rope_cos, persistent=False)
        self.register_buffer("rope_sin", model.rope_sin, persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.first:
            h = self.tok_embeddings(h)
        T = h.shape[1]
        cos, sin = self.rope_cos[:T][None], self.rope_sin[:T][None]
        for block in self.layers.values():
            h = block(h, cos, sin)
        if self.last:
            h = self.output(self.norm(h)).float()
        return h


def stage_layers(n_layers: int, n_stages: int) -> list[list[str]]:
    """Block indices of each of ``n_stages`` stages: contiguous and as even as possible (the
    earlier stages take one more block when they do not divide)."""
    if n_stages > n_layers:
        raise ConfigError(f"{n_stages} pipeline stages (parallel.pp x pp_virtual_stages) for a model of "
                          f"{n_layers} blocks: each stage needs at least one block")
    base, extra = divmod(n_layers, n_stages)
    out, start = [], 0
    for i in range(n_stages):
        size = base + (1 if i < extra else 0)
        out.append([str(j) for j in range(start, start + size)])
        start += size
    return out


def stage_ids(pp_rank: int, pp: int, virtual: int) -> list[int]:
    """The stages pipeline rank ``pp_rank`` runs: r, r + pp, r + 2 pp ... (torch's loop order)."""
    return [pp_rank + i * pp for i in range(virtual)]


def check_schedule(schedule: str, pp: int, virtual: int, microbatches: int) -> None:
    """Refuse what torch's schedules refuse, in one line naming the knob."""
    if schedule not in SCHEDULE_CLASSES:
        raise ConfigError(f"parallel.pp_schedule = {schedule!r}: choose from {', '.join(SCHEDULE_CLASSES)}")
    if schedule in INTERLEAVED and virtual < 2:
        raise ConfigError(f"parallel.pp_schedule = {schedule} runs several stages per rank: set "
                          f"parallel.pp_virtual_stages >= 2")
    if schedule not in INTERLEAVED and virtual != 1:
        raise ConfigError(f"parallel.pp_schedule = {schedule} runs one stage per rank: set "
                          f"parallel.pp_virtual_stages = 1 (or use interleaved_1f1b / zero_bubble)")
    if microbatches < pp:
        raise ConfigError(f"{microbatches} micro-batches for {pp} pipeline stages: a pipeline needs at least "
                          f"parallel.pp micro-batches per step (parallel.pp_microbatches)")
    if schedule in INTERLEAVED and microbatches % max(1, microbatches // pp):
        raise ConfigError(f"parallel.pp_microbatches = {microbatches} with {pp} stages: the interleaved "
                          f"schedules need a multiple of {microbatches // pp} (whole rounds)")


def split_model(model: nn.Module, pp_rank: int, pp: int, virtual: int = 1) -> list[Stage]:
    """The stage modules pipeline rank ``pp_rank`` of ``pp`` runs, cut from ``model`` (which they share
    parameters with). Blocks are spread evenly over pp x virtual stages."""
    n_stages = pp * virtual
    layers = stage_layers(model.cfg.n_layers, n_stages)
    tied = bool(model.cfg.tie_embeddings)
    out = []
    for i in stage_ids(pp_rank, pp, virtual):
        first, last = i == 0, i == n_stages - 1
        # The last stage owns a copy of a tied matrix (even on the first stage's rank: each torch
        # PipelineStage scales its own gradients, so one matrix in two stages would be scaled twice).
        out.append(Stage(model, layers[i], first, last, own_output=tied and last and n_stages > 1))
    return out


def tied_pair(stages: list[Stage]) -> tuple[nn.Parameter | None, nn.Parameter | None]:
    """(embedding weight, output copy) this rank holds of a tied matrix split over the pipeline."""
    emb = out = None
    for s in stages:
        if s.first and s.cfg.tie_embeddings:
            emb = s.tok_embeddings.weight
        if s.last and s.cfg.tie_embeddings and s.output.weight is not (emb if s.first else None):
            out = s.output.weight
    return emb, out


@torch.no_grad()
def sync_tied_grads(stages: list[Stage], pp_group: Any) -> None:
    """Sum the gradients of a tied embedding / output pair held by the first and last pipeline ranks
    (zeros from the middle ranks), so both copies step as one matrix. Every pipeline rank calls it,
    after backward (and after FSDP reduced the gradients over data parallelism)."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor, distribute_tensor

    c = stages[0].cfg
    emb, out = tied_pair(stages)
    if not c.tie_embeddings or (emb is None and out is None and dist.get_world_size(pp_group) == 1):
        return
    if emb is not None and out is not None:  # both ends on this rank (pp = 1, interleaved)
        if emb.grad is None or out.grad is None:
            return
        total = emb.grad + out.grad
        emb.grad.copy_(total)
        out.grad.copy_(total)
        return
    mine = emb if emb is not None else out
    if mine is None:  # a middle stage
        device = next(iter(stages[0].layers.values())).attention_norm.weight.device
        full = torch.zeros(c.vocab_size, c.dim, device=device)
    else:
        if mine.grad is None:
            mine.grad = torch.zeros_like(mine)
        g = mine.grad
        full = (g.full_tensor() if isinstance(g, DTensor) else g).detach().clone()
    dist.all_reduce(full, group=pp_group)
    if mine is None:
        return
    g = mine.grad
    if isinstance(g, DTensor):
        g.to_local().copy_(distribute_tensor(full, g.device_mesh, g.placements).to_local())
    else:
        g.copy_(full)


def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The model's training loss on the last stage: mean cross-entropy of one micro-batch."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def build_schedule(stages: list[nn.Module], stage_indices: list[int], n_stages: int, pp_group: Any,
                   device: torch.device, schedule: str, microbatches: int,
                   loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = loss_fn) -> Any:
    """A ``torch.distributed.pipelining`` schedule running ``stages`` (this rank's, possibly
    parallelized) with ``microbatches`` micro-batches per step; gradients are averaged over them."""
    import torch.distributed.pipelining as pipelining
    from torch.distributed.pipelining import PipelineStage

    check_schedule(schedule, n_stages // len(stages), len(stages), microbatches)
    cls = getattr(pipelining, SCHEDULE_CLASSES[schedule])
    pipe = [PipelineStage(m, i, n_stages, device, group=pp_group) for m, i in zip(stages, stage_indices, strict=True)]
    if schedule in INTERLEAVED:
        return cls(pipe, n_microbatches=microbatches, loss_fn=loss)
    return cls(pipe[0], n_microbatches=microbatches, loss_fn=loss)


def pipeline_step(schedule: Any, stages: list[Stage], tokens: torch.Tensor, targets: torch.Tensor,
                  pp_group: Any) -> torch.Tensor:
    """Forward and backward of one batch through the pipeline; returns the mean loss on every rank
    of the pipeline (it is computed on the last stage and broadcast from there)."""
    import torch.distributed as dist

    first = any(s.first for s in stages)
    last = any(s.last for s in stages)
    losses: list[torch.Tensor] = []
    args = (tokens,) if first else ()
    schedule.step(*args, target=targets if last else None, losses=losses if last else None,
                  return_outputs=False)
    loss = torch.stack([x.detach().float() for x in losses]).mean() if last else torch.zeros((), device=tokens.device)
    loss = loss.reshape(1).to(tokens.device)
    dist.all_reduce(loss, group=pp_group)  # only the last stage contributes
    sync_tied_grads(stages, pp_group)
    return loss[0]


class StagesModule(nn.Module):
    """This rank's stages seen as one module with the model's attribute names (``tok_embeddings``,
    ``layers.N``, ``norm``, ``output``): what the optimizer, the checkpoints and the gradient clipping
    see. It shares the stages' (possibly parallelized) submodules; forward runs through the schedule."""

    def __init__(self, stages: list[Stage]):
        super().__init__()
        self.cfg = stages[0].cfg
        self.layers = nn.ModuleDict()
        for s in stages:
            if s.first:
                self.tok_embeddings = s.tok_embeddings
            self.layers.update(s.layers)
            if s.last:
                self.norm, self.output = s.norm, s.output

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        raise RuntimeError("a pipeline rank's stages run through their schedule (Pipeline.train_step)")


class Pipeline:
    """This rank's part of a pipelined model: its stages (parallelized over the data-parallel and tensor
    dimensions of ``mesh``), their schedule, and ``module``, the :class:`StagesModule` over them."""

    def __init__(self, model: nn.Module, mesh: Any, cfg: Any, device: torch.device, microbatches: int,
                 compile: bool = False):
        from murmur.train.parallel import parallelize

        self.group, self.pp_rank, self.pp = mesh["pp"].get_group(), mesh["pp"].get_local_rank(), mesh["pp"].size()
        virtual = cfg.pp_virtual_stages
        self.stages = split_model(model, self.pp_rank, self.pp, virtual)
        parts = [parallelize(s, mesh, cfg, compile=compile) for s in self.stages]
        self.first = any(s.first for s in self.stages)
        self.last = any(s.last for s in self.stages)
        self.microbatches = microbatches
        self.schedule = build_schedule(parts, stage_ids(self.pp_rank, self.pp, virtual), self.pp * virtual,
                                       self.group, device, cfg.pp_schedule, microbatches)
        self.module = StagesModule(self.stages)
        _, copy = tied_pair(self.stages)
        self.uncounted = [copy] if copy is not None else []

    def train_step(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Forward and backward of this data-parallel rank's rows; the mean loss on every pipeline rank."""
        return pipeline_step(self.schedule, self.stages, tokens, targets, self.group)

    @torch.no_grad()
    def eval_loss(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Forward only: the mean loss of the rows (equal micro-batches) on every pipeline rank."""
        import torch.distributed as dist

        losses: list[torch.Tensor] = []
        self.schedule.eval(*((tokens,) if self.first else ()), target=targets if self.last else None,
                           losses=losses if self.last else None)
        loss = torch.stack([x.detach().float() for x in losses]).mean() if self.last \
            else torch.zeros((), device=tokens.device)
        loss = loss.reshape(1).to(tokens.device)
        dist.all_reduce(loss, group=self.group)
        return loss[0]

    def full_state(self) -> dict[str, torch.Tensor]:
        """The whole model's state gathered to global rank 0 (every stage's tensors, the tied matrix
        once); an empty dict on the other ranks. Every process calls it."""
        import torch.distributed as dist
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        sd = get_model_state_dict(self.module, options=StateDictOptions(full_state_dict=True))
        if self.module.cfg.tie_embeddings:
            sd.pop("output.weight", None)  # the last stage's copy of tok_embeddings.weight
        mine = {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}
        dst = dist.get_global_rank(self.group, 0)
        parts: list[Any] | None = [None] * self.pp if dist.get_rank() == dst else None
        dist.gather_object(mine, parts, dst=dst, group=self.group)
        if parts is None or dist.get_rank() != 0:
            return {}
        return {k: v for part in parts for k, v in part.items()}
