"""Cluster planner: how to lay a model out on N GPUs, how long it trains, and what failures cost.

Given a model shape, a token budget, a GPU type and count and the interconnect, ``plan`` enumerates
layouts (tensor-parallel degree within a node, pipeline stages with their schedule (GPipe, 1F1B,
interleaved 1F1B with virtual stages, zero-bubble), context parallelism for long sequences, FSDP
shard group size and replicas (HSDP), or DDP; activation checkpointing none/selective/full; the
micro-batch), keeps those that fit in GPU memory, estimates each one's step time with a
compute/communication roofline (pipeline bubble and point-to-point traffic included), and picks the
fastest. It then
turns the step time into days, GPU-hours and dollars, and the cluster's failure rate into the
Young/Daly checkpoint interval and the goodput that survives checkpoints, lost work and restarts.

Every formula is here, in small functions, and written out in docs/scaling.md. The memory model is
tested against what the model really holds on CPU (tests/test_plan.py): parameters, gradients and
AdamW states exactly; saved activations exactly for fp32 (same code paths as bf16, other byte sizes).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from murmur.config import knob
from murmur.errors import ConfigError

GiB = 2**30

# Llama 3 (Dubey et al. 2024, section 3.3.4): 419 unexpected interruptions in 54 days on 16,384 H100s.
LLAMA3_FAILURES_PER_GPU_HOUR = 419 / (54 * 24 * 16384)


@dataclass(frozen=True)
class GPU:
    """One accelerator: dense bf16 peak, memory as torch.cuda reports it, NVLink bandwidth per direction."""

    name: str
    peak_flops: float
    memory_gib: float
    nvlink_gbps: float  # GB/s per GPU per direction inside a node
    default_interconnect: str


GPUS: dict[str, GPU] = {
    "A100-40GB": GPU("A100-40GB", 312e12, 39.4, 300.0, "ib-8x200"),
    "A100-80GB": GPU("A100-80GB", 312e12, 79.2, 300.0, "ib-8x200"),
    "H100": GPU("H100", 989e12, 79.1, 450.0, "ib-8x400"),
    "H200": GPU("H200", 989e12, 139.8, 450.0, "ib-8x400"),
}

# Inter-node links per node (InfiniBand NICs x Gb/s); a rail-optimised fabric gives each GPU its share.
INTERCONNECTS: dict[str, tuple[int, float]] = {
    "ib-4x200": (4, 200.0),
    "ib-8x200": (8, 200.0),
    "ib-8x400": (8, 400.0),
}

AC_MODES = ("none", "selective", "full")
# Pipeline schedules, named as ``parallel.pp_schedule`` names them (torch.distributed.pipelining).
SCHEDULES = ("gpipe", "1f1b", "interleaved_1f1b", "zero_bubble")
INTERLEAVED = ("interleaved_1f1b", "zero_bubble")  # several virtual stages per rank


@dataclass(frozen=True)
class PlanConfig:
    """Inputs of ``murmur plan`` (every knob can be set as ``key=value``)."""

    model: str = knob("8b", "Model preset (murmur.model.PRESETS); the fields below override its shape.")
    dim: int = knob(0, "Hidden size (0 = the preset's).")
    n_layers: int = knob(0, "Transformer blocks (0 = the preset's).")
    n_heads: int = knob(0, "Query heads (0 = the preset's).")
    n_kv_heads: int = knob(0, "Key/value heads (0 = the preset's).")
    ffn_dim: int = knob(0, "SwiGLU hidden size (0 = the preset's).")
    vocab_size: int = knob(0, "Vocabulary size (0 = the preset's).")
    tokens: float = knob(1e12, "Training tokens.")
    gpu: str = knob("H100", f"GPU type: {', '.join(GPUS)}.")
    gpus: int = knob(1024, "Number of GPUs.")
    gpus_per_node: int = knob(8, "GPUs per node (the NVLink domain; tensor parallelism stays inside it).")
    interconnect: str = knob("default", f"Inter-node fabric: default (per GPU type), {', '.join(INTERCONNECTS)}.")
    seq_len: int = knob(4096, "Tokens per training sequence.")
    batch_tokens: float = knob(4e6, "Target global batch in tokens per optimizer step.")
    max_batch_factor: float = knob(2.0, "Reject layouts whose smallest possible global batch (one sequence "
                                        "per data-parallel rank) exceeds this multiple of batch_tokens.")
    tp: list[int] = knob([1, 2, 4, 8], "Tensor-parallel degrees to consider.")
    pp: list[int] = knob([1, 2, 4, 8, 16, 32, 64], "Pipeline stages to consider (1 = no pipeline).")
    schedules: list[str] = knob(list(SCHEDULES), f"Pipeline schedules to consider: {', '.join(SCHEDULES)}.")
    virtual_stages: list[int] = knob([2, 4, 8], "Virtual stages per pipeline rank to consider for the "
                                                "interleaved schedules (layers per stage / v each).")
    cp: list[int] = knob([1, 2, 4, 8, 16], "Context-parallel degrees to consider (sequences split into cp chunks).")
    cp_min_chunk: int = knob(2048, "Smallest sequence chunk per context-parallel rank worth splitting to.")
    ac: list[str] = knob(list(AC_MODES), "Activation checkpointing modes to consider.")
    compute_efficiency: float = knob(0.58, "Fraction of peak bf16 FLOP/s the matmuls achieve (before "
                                          "communication; 0.5-0.7 is typical for large dense models).")
    attention_efficiency: float = knob(0.4, "Fraction of peak the attention kernels achieve on PaLM's count of "
                                            "attention FLOPs (12 L H d T, as if not causal).")
    link_efficiency: float = knob(0.8, "Fraction of nominal NVLink/InfiniBand bandwidth collectives achieve.")
    latency_us: float = knob(8.0, "Latency of one inter-node step of a ring collective, microseconds "
                                  "(an intra-node step is taken as 1 us).")
    overlap: float = knob(0.8, "Fraction of compute time that FSDP/DDP communication can hide behind.")
    selective_ac_overhead: float = knob(0.03, "Extra time for selective recomputation (norms, pointwise ops).")
    reserve_gib: float = knob(4.0, "Memory held back per GPU for the CUDA context, NCCL buffers and "
                                   "allocator fragmentation.")
    price_per_gpu_hour: float = knob(2.0, "Dollars per GPU-hour.")
    failures_per_gpu_hour: float = knob(LLAMA3_FAILURES_PER_GPU_HOUR, "Unexpected interruptions per GPU-hour "
                                        "(default: Llama 3, 419 in 54 days on 16,384 H100s).")
    ckpt_write_s: float = knob(0.0, "Seconds a checkpoint blocks training (0 = checkpoint size / storage_gbps).")
    storage_gbps: float = knob(100.0, "Aggregate checkpoint write bandwidth of the file system, GB/s.")
    restart_s: float = knob(600.0, "Seconds from a failure to training again (detect, reschedule, load).")
    days: float = knob(30.0, "Also report the tokens this cluster trains in this many days.")


# ---------------------------------------------------------------- model shape and counts
@dataclass(frozen=True)
class Shape:
    """The numbers the formulas need (from a resolved ModelConfig)."""

    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_dim: int
    vocab_size: int
    tied: bool
    params: int
    flops_per_token: float
    seq_len: int = 0

    @property
    def attention_flops_per_token(self) -> float:
        """The attention score and value matmuls of ``flops_per_token``: 12 L H d T (PaLM's count)."""
        return 12 * self.n_layers * self.q_dim * self.seq_len

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def block_matrix_params(self) -> int:
        return 2 * self.dim * self.q_dim + 2 * self.dim * self.kv_dim + 3 * self.dim * self.ffn_dim

    @property
    def root_matrix_params(self) -> int:
        return self.vocab_size * self.dim * (1 if self.tied else 2)


def shape_of(model_cfg: Any, seq_len: int) -> Shape:
    """Shape of a ``murmur.model.ModelConfig`` (parameters and FLOPs from the model's own counters)."""
    from murmur.model import flops_per_token, num_params

    c = model_cfg.resolved()
    return Shape(c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_dim, c.vocab_size,
                 c.tie_embeddings, num_params(c), flops_per_token(c, seq_len), seq_len)


def model_shape(cfg: PlanConfig) -> Shape:
    from murmur.model import preset

    over = {k: getattr(cfg, k) for k in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "vocab_size")
            if getattr(cfg, k)}
    if "dim" in over or "n_heads" in over:
        over.setdefault("head_dim", 0)  # re-derive dim // n_heads
        if "ffn_dim" not in over and "dim" in over:
            over["ffn_dim"] = 0
    return shape_of(preset(cfg.model, **over), cfg.seq_len)


def params_per_gpu(s: Shape, tp: int, pp: int = 1) -> dict[str, float]:
    """Parameters one GPU owns after tensor and pipeline parallelism: matrices split tp ways, norms
    replicated; with pp stages, the fullest stage (ceil(L / pp) blocks, plus the embedding on the
    first stage or the final norm and output projection on the last; a tied matrix lives on both)."""
    block = s.block_matrix_params / tp + 2 * s.dim
    layers = math.ceil(s.n_layers / pp)
    root = s.root_matrix_params / tp + s.dim if pp == 1 else s.vocab_size * s.dim / tp + s.dim
    return {"block": block, "root": root, "layers": layers, "total": layers * block + root}

# ---------------------------------------------------------------- memory
def weight_bytes(params: float, dtype_bytes: int = 2) -> float:
    """Bytes of a set of weights (8e9 parameters in bf16 = 16e9 bytes)."""
    return params * dtype_bytes


def state_bytes(params: float, shard: int = 1) -> float:
    """fp32 master weights (4) + fp32 gradients (4) + AdamW first and second moments (4 + 4) per
    parameter, divided over an FSDP shard group of ``shard`` GPUs. In a single fp32 process the
    weights are the master copy: the same 16 bytes."""
    return 16 * params / shard


def activation_bytes_per_token(s: Shape, ac: str, tp: int = 1, act_bytes: int = 2,
                               attn_out_copy: bool = True, loss_parallel: bool = True) -> dict[str, float]:
    """Bytes kept for backward per token, per GPU: one block (``layer``), the final norm and logits
    (``head``), plus transient peaks during backward (``recompute``: one block recomputed;
    ``logits_grad``: the gradient of the logits).

    ``act_bytes`` is the activation dtype size (2 for bf16, 4 for fp32); RMSNorm always works in
    fp32, as do the attention log-sum-exp and the log-softmax. With tp > 1 the norms and the
    residual stream are sequence-parallel (divided by tp), but each column-parallel linear saves its
    all-gathered full-sequence input. ``attn_out_copy``: the attention output is copied into the
    [B, T, H*D] layout for wo (CUDA kernels; the CPU kernel already writes that layout).
    """
    a, t = act_bytes, tp
    D, Q, K, F, H, V = s.dim, s.q_dim, s.kv_dim, s.ffn_dim, s.n_heads, s.vocab_size
    # RMSNorm: fp32 input copy and normalized x (sequence-sharded), rsqrt, and the linear's gathered input.
    norm = (4 + a) * D / t + 4 / t + a * D
    attn = (a * (2 * Q + 2 * K + (Q if attn_out_copy else 0)) + 4 * H) / t  # q, k after RoPE, v, out, lse
    ffn = 4 * a * F / t  # w1 out, silu(w1 out), w3 out, their product
    none = 2 * norm + attn + ffn
    block_input = a * D / t
    selective = (block_input + a * (Q + 2 * K + 2 * F) / t + (a * Q + 4 * H) / t  # col-parallel mm, attention
                 + 2 * a * D + (2 * a * D / t if t > 1 else 0))  # row-parallel mm outputs (+ reduce-scatter)
    layer = {"none": none, "selective": selective, "full": block_input}[ac]
    recompute = {"none": 0.0, "selective": max(0.0, none - selective + block_input), "full": none}[ac]
    vt = V / t if (loss_parallel or t == 1) else V
    return {"layer": layer, "head": norm + 4 * vt, "recompute": recompute, "logits_grad": (4 + a) * vt}


def activation_bytes(s: Shape, micro_batch: int, seq_len: int, ac: str, tp: int = 1, act_bytes: int = 2,
                     attn_out_copy: bool = True) -> dict[str, float]:
    """Saved activations of one micro-batch (``saved``) and the peak including transients (``peak``)."""
    per = activation_bytes_per_token(s, ac, tp, act_bytes, attn_out_copy)
    n = micro_batch * seq_len
    saved = n * (s.n_layers * per["layer"] + per["head"])
    return {"saved": saved, "peak": saved + n * (per["recompute"] + per["logits_grad"])}


@dataclass(frozen=True)
class Layout:
    tp: int
    dp_shard: int
    dp_replicate: int
    ac: str
    micro_batch: int
    pp: int = 1
    schedule: str = "1f1b"
    virtual_stages: int = 1
    cp: int = 1

    @property
    def kind(self) -> str:
        if self.dp_shard > 1:
            return "HSDP" if self.dp_replicate > 1 else "FSDP"
        return "DDP" if self.dp_replicate > 1 else "single"

    @property
    def model_parallel(self) -> int:
        """GPUs one copy of the model spans: tp x cp x pp."""
        return self.tp * self.cp * self.pp

    def describe(self) -> str:
        parts = [f"{self.kind}"]
        if self.dp_shard > 1:
            parts.append(f"shard {self.dp_shard}")
        if self.dp_replicate > 1:
            parts.append(f"x {self.dp_replicate} replicas")
        parts.append(f"TP {self.tp}")
        if self.cp > 1:
            parts.append(f"CP {self.cp}")
        if self.pp > 1:
            v = f", {self.virtual_stages} virtual" if self.schedule in INTERLEAVED else ""
            parts.append(f"PP {self.pp} ({self.schedule}{v})")
        parts.append(f"AC {self.ac}")
        parts.append(f"micro-batch {self.micro_batch}")
        return ", ".join(parts)


def in_flight(lay: Layout, microbatches: int) -> float:
    """Micro-batches whose activations the busiest pipeline stage holds at once, in units of one
    micro-batch through one stage's layers (Narayanan et al. 2021, section 2.2): GPipe keeps all m;
    1F1B (and zero-bubble, whose deferred weight gradients keep the same inputs alive) keeps pp; the
    interleaved schedules (1 + (pp - 1) / (pp v)) times that."""
    if lay.pp == 1:
        return 1.0
    if lay.schedule == "gpipe":
        return float(microbatches)
    held = float(min(microbatches, lay.pp))
    if lay.schedule in INTERLEAVED:
        held *= 1 + (lay.pp - 1) / (lay.pp * lay.virtual_stages)
    return held


def bubble_fraction(lay: Layout, microbatches: int) -> float:
    """Idle time of a pipeline step as a fraction of its useful time, for m micro-batches:
    GPipe and 1F1B (pp - 1) / m; interleaved 1F1B with v virtual stages (pp - 1) / (v m)
    (Narayanan et al. 2021); zero-bubble a third of that, the backward split into input and weight
    gradients that fill the warm-up and cool-down (Qi et al. 2023, ZB-H1)."""
    if lay.pp == 1:
        return 0.0
    m = max(1, microbatches)
    if lay.schedule in INTERLEAVED:
        frac = (lay.pp - 1) / (lay.virtual_stages * m)
        return frac / 3 if lay.schedule == "zero_bubble" else frac
    return (lay.pp - 1) / m


def memory_per_gpu(s: Shape, lay: Layout, seq_len: int, microbatches: int = 1) -> dict[str, float]:
    """Bytes per GPU at the peak of a step, by component (bf16 compute, fp32 master weights and AdamW).

    ``microbatches`` is the number of micro-batches per optimizer step on this pipeline (it sets
    what GPipe keeps in flight). Context parallelism divides each sequence's tokens over cp ranks,
    and FSDP shards the states over dp_shard x cp (the cp ranks hold the same weights).
    """
    p = params_per_gpu(s, lay.tp, lay.pp)
    shard = lay.dp_shard * lay.cp
    out = {"states": state_bytes(p["total"], shard)}
    if shard > 1 and lay.pp > 1:
        # Under a pipeline schedule FSDP keeps the stage's weights gathered for the whole step (one
        # all-gather, not one per micro-batch) and accumulates unsharded fp32 gradients.
        out["gathered"] = p["total"] * (2 + 4)
    elif shard > 1:
        # Two blocks gathered at a time (current + prefetched): bf16 weights, bf16 grads, fp32 grads
        # for the reduce-scatter; the root (embedding, output) stays gathered with its bf16 gradient.
        out["gathered"] = 2 * p["block"] * (2 + 2 + 4) + p["root"] * (2 + 2)
    else:
        out["gathered"] = 2 * p["total"]  # bf16 autocast copies of the weights
    per = activation_bytes_per_token(s, lay.ac, lay.tp)
    n = lay.micro_batch * seq_len / lay.cp
    if lay.pp == 1:
        saved = n * (s.n_layers * per["layer"] + per["head"])
    else:
        # The first stage holds the most micro-batches; the last holds one (GPipe: all) plus the head.
        layers = p["layers"] * n * per["layer"]
        last = 1.0 if lay.schedule != "gpipe" else float(microbatches)
        saved = max(in_flight(lay, microbatches) * layers, last * (layers + n * per["head"]))
    out["activations"] = saved
    out["transient"] = n * (per["recompute"] + per["logits_grad"])
    out["total"] = sum(out.values())
    return out


# ---------------------------------------------------------------- time
def link_gbps(cfg: PlanConfig) -> tuple[float, float]:
    """(intra-node, inter-node) bandwidth per GPU in bytes/s, after ``link_efficiency``."""
    gpu = GPUS[cfg.gpu]
    name = gpu.default_interconnect if cfg.interconnect == "default" else cfg.interconnect
    nics, gbit = INTERCONNECTS[name]
    inter = nics * gbit / 8 * 1e9 / cfg.gpus_per_node
    return gpu.nvlink_gbps * 1e9 * cfg.link_efficiency, inter * cfg.link_efficiency


def recompute_flops_per_token(s: Shape, ac: str) -> float:
    """FLOPs per token that activation checkpointing adds: full AC runs every block's forward again,
    2 N_blocks for the matmuls plus 4 L H d T, the forward third of the attention term."""
    if ac != "full":
        return 0.0
    return 2 * s.block_matrix_params * s.n_layers + 4 * s.n_layers * s.q_dim * s.seq_len


def step_time(cfg: PlanConfig, s: Shape, lay: Layout, seqs_per_rank: int) -> dict[str, float]:
    """Seconds per optimizer step of one pipeline (data-parallel rank) that trains ``seqs_per_rank``
    sequences in micro-batches of ``lay.micro_batch``.

    Per micro-batch and GPU: compute = FLOPs (6N + attention, plus a forward of the blocks again
    under full AC) / (tp cp pp) / (peak x efficiency); TP moves 8 activation all-gathers /
    reduce-scatters per block (12 with full AC) over NVLink, not overlapped; CP all-gathers the
    keys and values of every block in forward and reduce-scatters their gradients in backward,
    hidden behind ``overlap`` of the attention; PP sends each micro-batch's activations forward and
    their gradients back at every (virtual) stage boundary, on the critical path. The pipeline runs
    m micro-batches plus its bubble. Data parallel: without a pipeline, FSDP all-gathers bf16 weights
    twice per micro-batch and reduce-scatters fp32 gradients once per step, hidden behind ``overlap``
    of the compute; under a pipeline schedule it gathers once per step and the gradient traffic
    hides only behind one micro-batch (the first forward, the last backward). HSDP and DDP
    all-reduce fp32 gradients across replicas.
    """
    gpu = GPUS[cfg.gpu]
    intra, inter = link_gbps(cfg)
    p = params_per_gpu(s, lay.tp, lay.pp)
    m = seqs_per_rank // lay.micro_batch
    tokens = lay.micro_batch * cfg.seq_len  # one micro-batch, before context parallelism splits it
    share = lay.tp * lay.cp * lay.pp
    attn = s.attention_flops_per_token * (4 / 3 if lay.ac == "full" else 1.0)
    matmul = s.flops_per_token + recompute_flops_per_token(s, lay.ac) - attn
    attn_mb = attn * tokens / share / (gpu.peak_flops * cfg.attention_efficiency)
    compute_mb = matmul * tokens / share / (gpu.peak_flops * cfg.compute_efficiency) + attn_mb
    if lay.ac == "selective":
        compute_mb *= 1 + cfg.selective_ac_overhead
    layers = s.n_layers / lay.pp  # stages balanced (the first and last carry fewer blocks)
    # Tensor parallel (sequence parallel): all-gather + reduce-scatter of [b, s / cp, D] activations.
    tp_mb = 0.0
    if lay.tp > 1:
        per_coll = (lay.tp - 1) / lay.tp * tokens / lay.cp * s.dim * 2
        colls = (12 if lay.ac == "full" else 8) * layers + 2 / lay.pp
        tp_mb = colls * (per_coll / intra + (lay.tp - 1) * 1e-6)
    # Context parallel: keys and values of the whole sequence gathered per block, their gradients
    # reduce-scattered (gathered again under full AC).
    cp_mb = cp_exposed_mb = 0.0
    if lay.cp > 1:
        bw, lat = _ring(cfg, lay.cp, lay.tp, intra, inter)
        kv = (lay.cp - 1) / lay.cp * tokens * 2 * s.kv_dim / lay.tp * 2
        cp_mb = (3 if lay.ac == "full" else 2) * layers * (kv / bw + lat)
        cp_exposed_mb = max(0.0, cp_mb - cfg.overlap * attn_mb)
    # Pipeline: activations forward and gradients back across each of v stage boundaries, [b, s/cp, D] / tp.
    p2p_mb = 0.0
    if lay.pp > 1:
        bw = intra if lay.tp * lay.cp * 2 <= cfg.gpus_per_node else inter
        v = lay.virtual_stages if lay.schedule in INTERLEAVED else 1
        msg = tokens / lay.cp * s.dim * 2 / lay.tp
        p2p_mb = 2 * v * (msg / bw + cfg.latency_us * 1e-6)
    per_mb = compute_mb + tp_mb + cp_exposed_mb + p2p_mb
    bubble = bubble_fraction(lay, m) * m * per_mb
    pipeline = m * per_mb + bubble
    # Data parallel over S = dp_shard x cp (FSDP) and R = dp_replicate (HSDP / DDP).
    dp_t = 0.0
    S, R = lay.dp_shard * lay.cp, lay.dp_replicate
    units = p["layers"] + 1
    gathers = 1 if lay.pp > 1 else 2 * m  # per step: once under a pipeline schedule, else per micro-batch
    if S > 1:
        bw, step_lat = _ring(cfg, S, lay.tp, intra, inter)
        dp_t += gathers * units * (step_lat + (S - 1) / S * 2 * p["total"] / units / bw)  # bf16 weights
        dp_t += units * (step_lat + (S - 1) / S * 4 * p["total"] / units / bw)  # fp32 gradients
    if R > 1:
        # All-reduce of the (sharded) fp32 gradients across replicas: a ring moves 2 (R-1)/R of the
        # data; NCCL's tree keeps the latency logarithmic. DDP buckets 100 MB at a time.
        bw, _ = _ring(cfg, R, lay.tp * S * lay.pp, intra, inter)
        data = 4 * p["total"] / S
        buckets = units if S > 1 else max(1, math.ceil(data / 100e6))
        span = S * R * lay.model_parallel
        lat = 2 * math.log2(R) * (cfg.latency_us * 1e-6 if span > cfg.gpus_per_node else 1e-6)
        dp_t += buckets * lat + 2 * (R - 1) / R * data / bw
    window = m * compute_mb if lay.pp == 1 else per_mb
    exposed = max(0.0, dp_t - cfg.overlap * window)
    total = pipeline + exposed
    return {"compute": m * compute_mb, "tp_comm": m * tp_mb, "cp_comm": m * cp_mb, "pp_comm": m * p2p_mb,
            "bubble": bubble, "dp_comm": dp_t, "dp_exposed": exposed, "total": total}


def _ring(cfg: PlanConfig, ranks: int, stride: int, intra: float, inter: float) -> tuple[float, float]:
    """(bandwidth per GPU, latency of a whole ring) for a group of ``ranks`` GPUs spaced ``stride`` apart.

    A group that fits in one node runs over NVLink; a larger one is limited by each GPU's share of
    the node's NICs, and its ring crosses every node the group spans (at most one per rank).
    """
    span = ranks * stride
    if span <= cfg.gpus_per_node:
        return intra, (ranks - 1) * 1e-6
    nodes = min(ranks, math.ceil(span / cfg.gpus_per_node))
    per_node = max(1, ranks // nodes)
    return inter, (nodes - 1) * cfg.latency_us * 1e-6 + (nodes * (per_node - 1)) * 1e-6


# ---------------------------------------------------------------- failures and checkpoints
def failures_per_day(gpus: int, rate_per_gpu_hour: float = LLAMA3_FAILURES_PER_GPU_HOUR) -> float:
    """Expected interruptions per day of a job on ``gpus`` GPUs (failures are independent per GPU)."""
    return gpus * rate_per_gpu_hour * 24


def mtbf_hours(gpus: int, rate_per_gpu_hour: float = LLAMA3_FAILURES_PER_GPU_HOUR) -> float:
    """Mean time between job interruptions: 1 / (gpus x per-GPU rate)."""
    return 1.0 / (gpus * rate_per_gpu_hour)


def young_daly_interval(ckpt_write_s: float, mtbf_s: float) -> float:
    """Optimal seconds of work between checkpoints, sqrt(2 x checkpoint write time x MTBF)."""
    return math.sqrt(2 * ckpt_write_s * mtbf_s)


def goodput(interval_s: float, ckpt_write_s: float, mtbf_s: float, restart_s: float) -> float:
    """Fraction of wall time spent on work that is kept (first-order model).

    Per unit of time: ``ckpt/interval`` goes to writing checkpoints; each failure (rate 1/MTBF)
    loses on average half an interval of work plus the restart time.
    """
    waste = ckpt_write_s / interval_s + (interval_s / 2 + restart_s) / mtbf_s
    return max(0.0, 1.0 - waste)


def checkpoint_bytes(params: float) -> float:
    """A training checkpoint: fp32 weights and both AdamW moments (12 bytes per parameter)."""
    return 12 * params


# ---------------------------------------------------------------- the search
@dataclass
class Candidate:
    layout: Layout
    memory: dict[str, float]
    time: dict[str, float]
    global_batch_tokens: int
    accum: int


@dataclass
class Plan:
    cfg: PlanConfig
    shape: Shape
    best: Candidate | None
    considered: int
    fitting: int
    alternatives: list[Candidate] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def cand(c: Candidate) -> dict[str, Any]:
            return {"layout": dataclasses.asdict(c.layout) | {"kind": c.layout.kind},
                    "memory_gib": {k: v / GiB for k, v in c.memory.items()},
                    "step_time_s": c.time, "global_batch_tokens": c.global_batch_tokens,
                    "grad_accum": c.accum}
        return {"config": dataclasses.asdict(self.cfg), "model": dataclasses.asdict(self.shape),
                "considered": self.considered, "fitting": self.fitting,
                "best": cand(self.best) if self.best else None,
                "alternatives": [cand(c) for c in self.alternatives], "summary": self.summary,
                "reasons": self.reasons}


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def gpu_name(name: str) -> str:
    """The GPU table's spelling of ``name``, in any case (``h100`` -> ``H100``, ``a100-80gb`` -> ``A100-80GB``)."""
    for key in GPUS:
        if key.lower() == name.strip().lower():
            return key
    raise ConfigError(f"unknown gpu {name!r} (choose from {', '.join(GPUS)}, in any case)")


def validate(cfg: PlanConfig) -> PlanConfig:
    """Check the knobs; returns the config with the GPU name spelled as the table spells it."""
    cfg = dataclasses.replace(cfg, gpu=gpu_name(cfg.gpu))
    if cfg.interconnect != "default" and cfg.interconnect not in INTERCONNECTS:
        raise ConfigError(f"unknown interconnect {cfg.interconnect!r} (choose from default, "
                          f"{', '.join(INTERCONNECTS)})")
    if cfg.gpus < 1 or cfg.tokens <= 0 or cfg.seq_len < 1 or cfg.batch_tokens <= 0:
        raise ConfigError("gpus, tokens, seq_len and batch_tokens must be positive")
    bad = [a for a in cfg.ac if a not in AC_MODES]
    if bad:
        raise ConfigError(f"unknown activation checkpointing mode {bad[0]!r} (choose from {', '.join(AC_MODES)})")
    bad = [x for x in cfg.schedules if x not in SCHEDULES]
    if bad:
        raise ConfigError(f"unknown pipeline schedule {bad[0]!r} (choose from {', '.join(SCHEDULES)})")
    if any(d < 1 for d in [*cfg.tp, *cfg.pp, *cfg.cp, *cfg.virtual_stages]):
        raise ConfigError("tp, pp, cp and virtual_stages degrees must be >= 1")
    return cfg


def pipeline_options(cfg: PlanConfig, s: Shape, pp: int) -> list[tuple[str, int]]:
    """(schedule, virtual stages) pairs for ``pp`` stages: one stage per rank for GPipe and 1F1B,
    v >= 2 for the interleaved schedules while every virtual stage keeps at least one block."""
    if pp == 1:
        return [("1f1b", 1)]
    out: list[tuple[str, int]] = []
    for sched in cfg.schedules:
        if sched in INTERLEAVED:
            out += [(sched, v) for v in sorted(set(cfg.virtual_stages)) if v >= 2 and pp * v <= s.n_layers]
        else:
            out.append((sched, 1))
    return out


def evaluate(cfg: PlanConfig, s: Shape, lay: Layout, seqs_per_rank: int) -> Candidate:
    """Memory and step time of one layout whose pipelines each train ``seqs_per_rank`` sequences a step."""
    m = seqs_per_rank // lay.micro_batch
    dp = lay.dp_shard * lay.dp_replicate
    return Candidate(lay, memory_per_gpu(s, lay, cfg.seq_len, m), step_time(cfg, s, lay, seqs_per_rank),
                     seqs_per_rank * dp * cfg.seq_len, m)


def enumerate_layouts(cfg: PlanConfig, s: Shape) -> tuple[list[Candidate], int, list[str]]:
    """Every layout (tp, cp, pp and schedule, shard group, replicas, AC, micro-batch) that fits in
    memory, and why others don't. For each (tp, cp, pp, schedule, shard, AC) the fastest fitting
    micro-batch is kept."""
    gpu = GPUS[cfg.gpu]
    budget = (gpu.memory_gib - cfg.reserve_gib) * GiB
    fits: list[Candidate] = []
    reasons: list[str] = []
    considered = 0
    seqs = max(1, math.ceil(cfg.batch_tokens / cfg.seq_len))
    for tp in sorted(set(cfg.tp)):
        if tp > cfg.gpus_per_node or cfg.gpus % tp:
            reasons.append(f"tp {tp}: must divide the GPU count and stay within a node")
            continue
        if s.n_heads % tp or s.n_kv_heads % tp:
            reasons.append(f"tp {tp}: does not divide the model's {s.n_heads} heads / {s.n_kv_heads} KV heads")
            continue
        for cp in sorted(set(cfg.cp)):
            if cp > 1 and (cfg.seq_len % cp or cfg.seq_len // cp < cfg.cp_min_chunk):
                continue  # sequences too short to split (cp_min_chunk)
            for pp in sorted(set(cfg.pp)):
                if pp > s.n_layers or cfg.gpus % (tp * cp * pp):
                    continue
                dp = cfg.gpus // (tp * cp * pp)
                seqs_per_rank = max(1, math.ceil(seqs / dp))
                global_tokens = seqs_per_rank * dp * cfg.seq_len
                if global_tokens > cfg.max_batch_factor * cfg.batch_tokens:
                    reasons.append(f"tp {tp} cp {cp} pp {pp}: {dp} data-parallel ranks need a global batch of "
                                   f"at least {global_tokens / 1e6:.1f}M tokens, over {cfg.max_batch_factor:g}x "
                                   f"the target")
                    continue
                for sched, v in pipeline_options(cfg, s, pp):
                    for shard in _divisors(dp):
                        for ac in cfg.ac:
                            best: Candidate | None = None
                            for b in sorted(_divisors(seqs_per_rank), reverse=True):
                                m = seqs_per_rank // b
                                if pp > 1 and (m < pp or (sched in INTERLEAVED and m % (m // pp))):
                                    continue  # torch's schedules: m >= pp; interleaved: whole rounds
                                considered += 1
                                lay = Layout(tp, shard, dp // shard, ac, b, pp, sched, v, cp)
                                if memory_per_gpu(s, lay, cfg.seq_len, m)["total"] > budget:
                                    continue
                                c = evaluate(cfg, s, lay, seqs_per_rank)
                                if best is None or c.time["total"] < best.time["total"]:
                                    best = c
                                if pp == 1:
                                    break  # without a pipeline the largest micro-batch that fits is fastest
                            if best is not None:
                                fits.append(best)
    return fits, considered, reasons


def plan(cfg: PlanConfig) -> Plan:
    """Search the layouts and summarise the best: time, cost, failures, checkpoints and goodput."""
    cfg = validate(cfg)
    s = model_shape(cfg)
    fits, considered, reasons = enumerate_layouts(cfg, s)
    if not fits:
        reasons.append(f"nothing fits in {GPUS[cfg.gpu].memory_gib:g} GiB per GPU (reserve {cfg.reserve_gib:g} "
                       f"GiB); try more GPUs, a larger GPU, or a smaller model")
        return Plan(cfg, s, None, considered, 0, reasons=reasons)
    # Fastest per token (layouts round the global batch differently), then the least memory.
    fits.sort(key=lambda c: (c.time["total"] / c.global_batch_tokens, c.memory["total"]))
    best = fits[0]

    def key(c: Candidate) -> str:
        return f"{c.layout.kind} tp{c.layout.tp} cp{c.layout.cp} pp{c.layout.pp} {c.layout.schedule} {c.layout.ac}"

    others, seen = [], {key(best)}
    for c in fits[1:]:
        if key(c) not in seen:
            seen.add(key(c))
            others.append(c)
        if len(others) == 5:
            break
    return Plan(cfg, s, best, considered, len(fits), others, reasons, summarize(cfg, s, best))


def evaluate_layout(cfg: PlanConfig, layout: Layout) -> Plan:
    """The plan of one given layout (a published run's, say) instead of the best one found: its
    memory, step time, MFU and cost under the same model. The global batch is ``batch_tokens``
    rounded up to whole sequences per data-parallel rank."""
    cfg = validate(cfg)
    s = model_shape(cfg)
    dp = cfg.gpus // layout.model_parallel
    if dp * layout.model_parallel != cfg.gpus or layout.dp_shard * layout.dp_replicate != dp:
        raise ConfigError(f"layout {layout.describe()} does not multiply out to {cfg.gpus} GPUs")
    seqs_per_rank = max(1, math.ceil(cfg.batch_tokens / cfg.seq_len / dp))
    if seqs_per_rank % layout.micro_batch:
        raise ConfigError(f"micro-batch {layout.micro_batch} does not divide {seqs_per_rank} sequences per rank")
    c = evaluate(cfg, s, layout, seqs_per_rank)
    return Plan(cfg, s, c, 1, int(c.memory["total"] <= (GPUS[cfg.gpu].memory_gib - cfg.reserve_gib) * GiB),
                summary=summarize(cfg, s, c))


def summarize(cfg: PlanConfig, s: Shape, c: Candidate) -> dict[str, Any]:
    gpu = GPUS[cfg.gpu]
    step = c.time["total"]
    tokens_per_s = c.global_batch_tokens / step
    mfu = s.flops_per_token * tokens_per_s / (cfg.gpus * gpu.peak_flops)
    # Hardware FLOPs also count the recomputed forward of full checkpointing (Megatron-LM's count).
    hw_flops = s.flops_per_token + recompute_flops_per_token(s, c.layout.ac)
    mtbf_s = mtbf_hours(cfg.gpus, cfg.failures_per_gpu_hour) * 3600
    ckpt_bytes = checkpoint_bytes(s.params)
    ckpt_s = cfg.ckpt_write_s or ckpt_bytes / (cfg.storage_gbps * 1e9)
    interval = young_daly_interval(ckpt_s, mtbf_s)
    gp = goodput(interval, ckpt_s, mtbf_s, cfg.restart_s)
    ideal_days = cfg.tokens / tokens_per_s / 86400
    days = ideal_days / gp if gp > 0 else math.inf
    gpu_hours = days * 24 * cfg.gpus
    return {
        "params": s.params, "flops_per_token": s.flops_per_token, "step_time_s": step,
        "tokens_per_step": c.global_batch_tokens, "tokens_per_s": tokens_per_s, "mfu": mfu,
        "hfu": hw_flops * tokens_per_s / (cfg.gpus * gpu.peak_flops),
        "tflops_per_gpu": s.flops_per_token * tokens_per_s / cfg.gpus / 1e12,
        "train_overrides": train_overrides(c.layout), "microbatches": c.accum,
        "steps": math.ceil(cfg.tokens / c.global_batch_tokens), "ideal_days": ideal_days, "days": days,
        "gpu_hours": gpu_hours, "cost_usd": gpu_hours * cfg.price_per_gpu_hour,
        "failures_per_day": failures_per_day(cfg.gpus, cfg.failures_per_gpu_hour), "mtbf_hours": mtbf_s / 3600,
        "checkpoint_gb": ckpt_bytes / 1e9, "checkpoint_write_s": ckpt_s, "checkpoint_interval_s": interval,
        "checkpoint_interval_steps": max(1, round(interval / step)), "goodput": gp,
        "tokens_in_days": tokens_per_s * gp * cfg.days * 86400, "days_window": cfg.days,
        "chinchilla_tokens": 20 * s.params,
    }


# ---------------------------------------------------------------- output
def train_overrides(lay: Layout) -> str:
    """The ``murmur train`` overrides that run ``lay`` (``parallel.tp=8 parallel.pp=16 ...``).

    Context parallelism is planned but not in the trainer: a layout with cp > 1 says so instead of
    printing an override that would be refused.
    """
    parts = [f"parallel.dp_replicate={lay.dp_replicate}", f"parallel.dp_shard={lay.dp_shard}",
             f"parallel.tp={lay.tp}", f"parallel.pp={lay.pp}"]
    if lay.pp > 1:
        parts.append(f"parallel.pp_schedule={lay.schedule}")
        if lay.schedule in INTERLEAVED:
            parts.append(f"parallel.pp_virtual_stages={lay.virtual_stages}")
    parts += [f"parallel.activation_checkpointing={lay.ac}", f"batch.micro_batch={lay.micro_batch}"]
    if lay.cp > 1:
        parts.append(f"# context parallel {lay.cp} is not in murmur train yet (the dp_shard above includes it)")
    return " ".join(parts)


def parse_count(text: str) -> float:
    """'15T', '4M', '2.5e12', '1_000' -> a number (K, M, B or G, T = 1e3, 1e6, 1e9, 1e12)."""
    t = text.strip().replace("_", "").replace(",", "")
    mult = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}.get(t[-1:].upper(), 1.0)
    if mult != 1.0:
        t = t[:-1]
    try:
        return float(t) * mult
    except ValueError:
        raise ConfigError(f"{text!r} is not a count (examples: 15T, 4M, 2.5e12)") from None


def _fmt_tokens(n: float) -> str:
    for unit, div in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"


def print_plan(p: Plan) -> None:
    """The plan as rich tables: the layout, memory per GPU, time and cost, failures and checkpoints."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    cfg, s = p.cfg, p.shape
    head = (f"{cfg.model} ({s.params / 1e9:.2f}B params, {s.n_layers} layers, dim {s.dim}) on {cfg.gpus:,} x "
            f"{cfg.gpu}, {_fmt_tokens(cfg.tokens)} tokens, seq {cfg.seq_len}")
    if p.best is None:
        console.print(f"[bold red]no layout fits[/] {head}")
        for r in p.reasons:
            console.print(f"  - {r}")
        return
    c, m = p.best, p.summary
    t = Table(title=f"plan: {head}", show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    t.add_row("layout", c.layout.describe())
    t.add_row("murmur train", m["train_overrides"])
    t.add_row("global batch", f"{_fmt_tokens(c.global_batch_tokens)} tokens ({c.accum} micro-batches per "
                              f"{'pipeline' if c.layout.pp > 1 else 'GPU'})")
    tm = c.time
    pipe = (f", PP comm {tm['pp_comm']:.2f}, bubble {tm['bubble']:.2f}" if c.layout.pp > 1 else "")
    ctx = f", CP comm {tm['cp_comm']:.2f}" if c.layout.cp > 1 else ""
    t.add_row("step time", f"{m['step_time_s']:.2f} s (compute {tm['compute']:.2f}, TP comm {tm['tp_comm']:.2f}"
                           f"{ctx}{pipe}, DP comm {tm['dp_comm']:.2f} of which exposed {tm['dp_exposed']:.2f})")
    t.add_row("throughput / MFU", f"{m['tokens_per_s'] / 1e6:.2f}M tokens/s, {m['tflops_per_gpu']:.0f} TFLOP/s "
                                  f"per GPU, MFU {m['mfu'] * 100:.1f}%")
    t.add_row("training time", f"{m['days']:.1f} days ({m['ideal_days']:.1f} without failures), "
                               f"{m['steps']:,} steps")
    t.add_row("cost", f"{m['gpu_hours'] / 1e6:.2f}M GPU-hours = ${m['cost_usd'] / 1e6:.2f}M at "
                      f"${cfg.price_per_gpu_hour:g}/GPU-hour")
    t.add_row("failures", f"{m['failures_per_day']:.1f} per day (MTBF {m['mtbf_hours']:.1f} h)")
    t.add_row("checkpoints", f"{m['checkpoint_gb']:.0f} GB, {m['checkpoint_write_s']:.1f} s to write; every "
                             f"{m['checkpoint_interval_s'] / 60:.1f} min (~{m['checkpoint_interval_steps']} steps, "
                             f"Young/Daly)")
    t.add_row("goodput", f"{m['goodput'] * 100:.1f}%")
    t.add_row(f"in {m['days_window']:g} days", f"{_fmt_tokens(m['tokens_in_days'])} tokens "
                                             f"(Chinchilla-optimal for this model: {_fmt_tokens(m['chinchilla_tokens'])})")
    console.print(t)
    mem = Table(title="memory per GPU (GiB)")
    for k in ("states", "gathered", "activations", "transient", "total"):
        mem.add_column(k, justify="right")
    mem.add_column("capacity", justify="right")
    mem.add_row(*(f"{c.memory[k] / GiB:.1f}" for k in ("states", "gathered", "activations", "transient", "total")),
                f"{GPUS[cfg.gpu].memory_gib:g} - {cfg.reserve_gib:g}")
    console.print(mem)
    if p.alternatives:
        alt = Table(title=f"runners-up ({p.fitting:,} of {p.considered:,} layouts fit)")
        for col in ("layout", "memory GiB", "step s", "vs best"):
            alt.add_column(col, justify="right" if col != "layout" else "left")
        for a in p.alternatives:
            alt.add_row(a.layout.describe(), f"{a.memory['total'] / GiB:.1f}", f"{a.time['total']:.2f}",
                        f"{a.time['total'] / c.time['total']:.2f}x")
        console.print(alt)
