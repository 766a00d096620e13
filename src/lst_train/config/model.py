"""The `model` section: vocabulary, the three stacks, patch slots, attention and kernel backends."""

from dataclasses import dataclass, field
from enum import StrEnum

from lst_train.config.errors import check


class Arch(StrEnum):
    lst = "lst"
    baseline = "baseline"


class Pooling(StrEnum):
    max = "max"
    mean = "mean"


class AttentionBackend(StrEnum):
    auto = "auto"
    sdpa = "sdpa"
    flex = "flex"


class KernelBackend(StrEnum):
    auto = "auto"
    triton = "triton"
    reference = "reference"


@dataclass
class VocabConfig:
    text_size: int = 4096
    """Number of text BPE ids; at least the tiktoken ranks file's size."""
    speech_codebook_size: int = 2048
    """Codes per speech codebook (Mimi: 2048; HuBERT units: e.g. 500)."""
    n_codebooks: int = 1
    """Speech codebooks per frame, flattened frame by frame (1 = Mimi's semantic codebook only)."""


@dataclass
class StackConfig:
    n_layers: int = 1
    """Transformer blocks in this stack."""
    dim: int = 64
    """Model width of this stack."""
    n_heads: int = 4
    """Attention heads; must divide dim."""
    window: int = 0
    """Self-attention window in positions of this stack (tokens locally, patches globally); 0 = whole document."""


@dataclass
class ModelConfig:
    arch: Arch = Arch.lst
    """'lst' (patch encoder + global transformer + patch decoder) or 'baseline' (global transformer over tokens)."""
    vocab: VocabConfig = field(default_factory=VocabConfig)
    """Vocabulary layout shared by model, data and evaluation."""
    encoder: StackConfig = field(default_factory=lambda: StackConfig(n_layers=1, dim=32, n_heads=2, window=64))
    """Patch encoder (LST only)."""
    global_transformer: StackConfig = field(default_factory=lambda: StackConfig(n_layers=2, dim=64, n_heads=4))
    """The large transformer over patches (LST) or tokens (baseline)."""
    decoder: StackConfig = field(default_factory=lambda: StackConfig(n_layers=2, dim=32, n_heads=2, window=64))
    """Patch decoder (LST only); its width must equal the encoder's."""
    patch_slots: int = 2
    """k: query slots per patch; the global width must be k × the encoder width."""
    pooling: Pooling = Pooling.max
    """How the patch queries are initialised from the patch's token states: 'max' or 'mean'."""
    unpool_window: int = 1
    """Patches whose global outputs each decoder token attends to (1 = only the patch before its target's)."""
    rope_theta: float = 10000.0
    """RoPE base for every stack."""
    norm_eps: float = 1e-5
    """RMSNorm epsilon."""
    ffn_multiple_of: int = 256
    """SwiGLU hidden width = 8/3 × dim rounded up to a multiple of this."""
    init_std: float = 0.02
    """Standard deviation of the normal weight init (output projections are scaled down by depth)."""
    attention: AttentionBackend = AttentionBackend.auto
    """Self-attention: "auto" (FlexAttention block masks on CUDA, SDPA on CPU), "sdpa" or "flex" (flex has no CPU
    backward). SDPA runs windowed stacks block by block when the window is at most a quarter of the row (scores
    [L, 2·window] instead of [L, L]), with a dense mask otherwise."""
    output_chunk: int = 8192
    """Training loss: tokens whose logits the output head computes at once (bounds memory: fp32 logits of a whole
    [B, T, V] batch are never held). On a CPU keep chunk × V × 4 bytes under ~32 MB (the CPU recipes use 256)."""
    kernels: KernelBackend = KernelBackend.auto
    """Patch-op backend (lst_kernels): "auto": Triton on CUDA, the reference on CPU; "triton" / "reference" force
    one."""
    kernels_deterministic: bool = False
    """Triton unpooling backward without atomics, so a GPU run is bitwise reproducible (also on whenever
    torch.use_deterministic_algorithms(True) is set); off, its key/value gradients are summed with atomics."""


def validate_stack(stack: StackConfig, key: str) -> None:
    check(stack.n_layers >= 1, f"{key}.n_layers", f"must be >= 1, got {stack.n_layers}")
    check(stack.dim >= 1, f"{key}.dim", f"must be >= 1, got {stack.dim}")
    check(stack.n_heads >= 1 and stack.dim % stack.n_heads == 0, f"{key}.n_heads",
          f"must divide {key}.dim={stack.dim}, got {stack.n_heads}")
    check((stack.dim // stack.n_heads) % 2 == 0, f"{key}.n_heads",
          f"head width dim/n_heads={stack.dim // stack.n_heads} must be even for RoPE")
    check(stack.window >= 0, f"{key}.window", f"must be >= 0 (0 = whole document), got {stack.window}")


def validate_model(m: ModelConfig) -> None:
    """Start-up checks of the model section (raise the one-line ConfigError)."""
    for name in ("text_size", "speech_codebook_size", "n_codebooks"):
        value = getattr(m.vocab, name)
        check(value >= 1, f"model.vocab.{name}", f"must be >= 1, got {value}")
    validate_stack(m.global_transformer, "model.global_transformer")
    check(m.ffn_multiple_of >= 1, "model.ffn_multiple_of", f"must be >= 1, got {m.ffn_multiple_of}")
    check(m.output_chunk >= 1, "model.output_chunk", f"must be >= 1, got {m.output_chunk}")
    check(m.rope_theta > 0, "model.rope_theta", f"must be > 0, got {m.rope_theta}")
    check(m.norm_eps > 0, "model.norm_eps", f"must be > 0, got {m.norm_eps}")
    check(m.init_std > 0, "model.init_std", f"must be > 0, got {m.init_std}")
    if m.arch != "lst":
        return
    validate_stack(m.encoder, "model.encoder")
    validate_stack(m.decoder, "model.decoder")
    check(m.patch_slots >= 1, "model.patch_slots", f"must be >= 1, got {m.patch_slots}")
    check(m.unpool_window >= 1, "model.unpool_window", f"must be >= 1, got {m.unpool_window}")
    check(m.decoder.dim == m.encoder.dim, "model.decoder.dim",
          f"must equal model.encoder.dim={m.encoder.dim} (the decoder reads the encoder's token states), "
          f"got {m.decoder.dim}")
    want = m.patch_slots * m.encoder.dim
    check(m.global_transformer.dim == want, "model.global_transformer.dim",
          f"must equal model.patch_slots × model.encoder.dim = {m.patch_slots} × {m.encoder.dim} = {want}, "
          f"got {m.global_transformer.dim}; change one of the three")
