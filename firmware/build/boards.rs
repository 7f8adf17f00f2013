//! Which board each target triple runs on, and the model sized for that board's memory.

use picoformer::{DecoderConfig, WrapperConfig};

/// Element type of the weights in the model file.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
    /// The matrices as Q8_0 blocks (`picoformer quantize`'s layout: U8 `[rows, cols / 32, 34]`),
    /// the other tensors f32.
    Q8_0,
}

impl Dtype {
    /// The safetensors dtype tag.
    pub fn tag(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::Bf16 => "BF16",
            Dtype::Q8_0 => "U8",
        }
    }
    /// Bytes per element (a Q8_0 tensor's elements are bytes).
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::Bf16 => 2,
            Dtype::Q8_0 => 1,
        }
    }
}

/// The weights `PICOFORMER_FW_WEIGHTS` asks for instead of the board's (`run.sh`'s table of
/// instructions per token by weight type): `f32`, `f16`, `bf16`, `q8_0`, or `int8` (Q8_0 weights
/// on the int8 path). Returns the element type and whether the int8 path is on; `None` if unset.
pub fn weights_override() -> Option<(Dtype, bool)> {
    let v = std::env::var("PICOFORMER_FW_WEIGHTS").ok()?;
    Some(match v.as_str() {
        "" => return None,
        "f32" => (Dtype::F32, false),
        "f16" => (Dtype::F16, false),
        "bf16" => (Dtype::Bf16, false),
        "q8_0" => (Dtype::Q8_0, false),
        "int8" => (Dtype::Q8_0, true),
        other => panic!("PICOFORMER_FW_WEIGHTS={other}: expected f32, f16, bf16, q8_0 or int8"),
    })
}

/// Where a board's model file comes from.
#[allow(clippy::large_enum_variant)] // one value per build, in the build script
pub enum Source {
    /// A model exported from x-transformers by `tools/export.py`: `tests/fixtures/NAME.model.safetensors`.
    /// (No board's decoder uses one today; the keyword spotter's is always the fixture `kws`.)
    #[allow(dead_code)]
    Fixture(&'static str),
    /// A model written here (`model_file.rs`) with deterministic weights.
    Generated {
        /// Its configuration.
        config: WrapperConfig,
        /// Weight element type.
        dtype: Dtype,
        /// Seed of the weights.
        seed: u64,
    },
}

/// A board, the model it runs and the decoding it checks.
pub struct Board {
    /// QEMU machine name, also a `cfg(board = "...")` value.
    pub machine: &'static str,
    /// Linker script in `link/`: a cortex-m-rt `memory.x`, or a whole script for RISC-V.
    pub link: &'static str,
    /// Whether `link` is a cortex-m-rt memory map (used with `-Tlink.x`).
    pub cortex_m: bool,
    /// A short name for the model.
    pub model: &'static str,
    /// The model file.
    pub source: Source,
    /// Prompt length.
    pub prompt: usize,
    /// Tokens generated greedily after the prompt.
    pub generate: usize,
    /// Positions the scratch arena holds, i.e. that a forward pass runs per chunk (longer
    /// inputs run in chunks, with the same results); 0 for all of them (prompt + generated − 1).
    /// The host runs with the same arena.
    pub chunk: usize,
    /// Seed of the deterministic prompts.
    pub seed: u64,
    /// Link section of the embedded model file ("" for the default `.rodata`), the keyword
    /// spotter's too.
    pub model_section: &'static str,
    /// Whether the keyword-spotting example (`src/kws.rs`, `tests/fixtures/kws`: 278 KB of
    /// f16 weights, about 160 KB of RAM) runs on this board.
    pub kws: bool,
}

/// The board a target triple runs on.
pub fn for_target(target: &str) -> Board {
    match target {
        // Cortex-M0 (nRF51, no FPU): 16 KiB of RAM for everything, statics and stack, and
        // 256 KiB of flash, 212 KB of it code: a micro model of one block (dim 32, rotary, one
        // kv head, f16 weights, 28 KB), its KV cache for 15 positions and a scratch arena of
        // one position (the whole sequence's pass runs position by position). The embedding is
        // not tied: tied, a random one-block model only repeats the last token.
        "thumbv6m-none-eabi" => Board {
            machine: "microbit",
            link: "microbit.x",
            cortex_m: true,
            model: "nano-f16",
            source: Source::Generated {
                config: WrapperConfig::new(
                    32,
                    24,
                    DecoderConfig::new(32, 1)
                        .heads(2)
                        .attn_dim_head(16)
                        .attn_one_kv_head(true)
                        .rotary_pos_emb(true),
                ),
                dtype: Dtype::F16,
                seed: 6,
            },
            prompt: 6,
            generate: 10,
            seed: 6,
            chunk: 1,
            model_section: "",
            kws: false,
        },
        // 64 KiB of RAM and 256 KiB of flash: a micro model (dim 32, rotary, one kv head, tied
        // embedding, f16 weights, about 48 KB) that leaves the code room in flash.
        "thumbv7m-none-eabi" => Board {
            machine: "lm3s6965evb",
            link: "lm3s6965evb.x",
            cortex_m: true,
            model: "micro-f16",
            source: Source::Generated {
                config: WrapperConfig::new(
                    40,
                    32,
                    DecoderConfig::new(32, 2)
                        .heads(2)
                        .attn_dim_head(16)
                        .attn_one_kv_head(true)
                        .rotary_pos_emb(true),
                )
                .tie_embedding(true),
                dtype: Dtype::F16,
                seed: 1,
            },
            prompt: 6,
            generate: 10,
            seed: 1,
            chunk: 0,
            model_section: "",
            kws: false,
        },
        // 4 MiB of code memory: a small f16 model with absolute positions, LayerNorm and GELU.
        "thumbv7em-none-eabihf" => Board {
            machine: "mps2-an386",
            link: "mps2-an386.x",
            cortex_m: true,
            model: "small-f16",
            source: Source::Generated {
                config: WrapperConfig::new(256, 64, DecoderConfig::new(128, 4).heads(4).attn_dim_head(32)),
                dtype: Dtype::F16,
                seed: 2,
            },
            prompt: 8,
            generate: 16,
            seed: 2,
            chunk: 0,
            model_section: "",
            kws: true,
        },
        // Weights in the 2 GiB DDR: a model too large for any other board here (f32, ~12 MiB).
        "thumbv8m.main-none-eabihf" => Board {
            machine: "mps3-an547",
            link: "mps3-an547.x",
            cortex_m: true,
            model: "large-f32",
            source: Source::Generated {
                config: WrapperConfig::new(
                    512,
                    0,
                    DecoderConfig::new(256, 4)
                        .heads(8)
                        .attn_dim_head(32)
                        .attn_kv_heads(4)
                        .rotary_pos_emb(true),
                ),
                dtype: Dtype::F32,
                seed: 3,
            },
            prompt: 8,
            generate: 16,
            seed: 3,
            chunk: 0,
            model_section: ".ddr_rodata",
            kws: true,
        },
        // No FPU: soft-float. RMSNorm, SwiGLU, grouped-query attention, bf16 weights, and three
        // options of x-transformers' next tier: sandwich norms, scaled residuals and the output
        // softclamp.
        "riscv32imac-unknown-none-elf" => Board {
            machine: "virt",
            link: "riscv32-virt.ld",
            cortex_m: false,
            model: "glu-sandwich-bf16",
            source: Source::Generated {
                config: WrapperConfig::new(
                    128,
                    0,
                    DecoderConfig::new(64, 2)
                        .heads(4)
                        .attn_dim_head(16)
                        .attn_kv_heads(2)
                        .use_rmsnorm(true)
                        .ff_glu(true)
                        .ff_swish(true)
                        .ff_mult(2.0)
                        .rotary_pos_emb(true)
                        .sandwich_norm(true)
                        .scale_residual(true)
                        .softclamp_output(4.0),
                ),
                dtype: Dtype::Bf16,
                seed: 4,
            },
            prompt: 8,
            generate: 16,
            seed: 4,
            chunk: 0,
            model_section: "",
            kws: false,
        },
        other => panic!(
            "picoformer-firmware: no board for target `{other}`; build with --target \
             thumbv6m-none-eabi, thumbv7m-none-eabi, thumbv7em-none-eabihf, thumbv8m.main-none-eabihf or riscv32imac-unknown-none-elf"
        ),
    }
}
