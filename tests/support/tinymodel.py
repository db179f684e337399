"""Build a tiny random-weight Llama model and tokenizer that vLLM on CPU can serve.

Why: the integration tests need a *real* vLLM server, and nothing may be downloaded. A model
built here in ~seconds (~150k parameters, ~0.6 MB) exercises vLLM's whole serving path —
tokenizer, chat template, scheduler, KV cache, streaming, metrics — while generating noise.

Runs inside the vLLM venv (it needs torch/transformers/tokenizers); the main environment calls
it as a subprocess:  $VLLM_PYTHON -m tests.support.tinymodel DIR
The build is deterministic (fixed seed, fixed corpus), so two builds are byte-identical.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: vLLM's CPU attention kernels only support some head sizes (32, 64, 80, 96, 112, 128, ...);
#: head_dim 16 passes /health but every request fails with 500. hidden 64 / 2 heads = 32.
HIDDEN_SIZE = 64
NUM_HEADS = 2
VOCAB_SIZE = 1024
MAX_POSITIONS = 512

BOS, EOS, PAD = "<|bos|>", "<|end|>", "<|pad|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|tool|>"]
SPECIAL_TOKENS = [BOS, EOS, PAD, *ROLE_TOKENS]

#: Each message is `<|role|>content<|end|>`; the prompt ends with `<|assistant|>` so the model
#: "answers". List-style content (OpenAI content parts) is joined from its text parts.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% elif message['content'] %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{% endif %}"
    "{{ eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)

_CORPUS = """\
Hello! How can I help you today? I would like to book an appointment for next Tuesday.
Our opening hours are Monday to Friday, nine to five. The price for a standard visit is
forty five dollars. Please confirm your name, phone number and the service you need.
The sales call brief: the customer runs a small bakery with three locations and wants
online ordering. Key risks are delivery radius, staff training and payment fees.
Marketing draft: spring offer, twenty percent off all cleaning services booked this week.
Route this message to billing, support, sales or scheduling. Extract the date, time and
address from the request. Summarise the conversation in two sentences for the team.
The quick brown fox jumps over the lazy dog. 0123456789 , . ; : ! ? ' " ( ) [ ] { } - _ / @ #
"""


def _corpus_lines() -> list[str]:
    lines = [line for line in _CORPUS.splitlines() if line.strip()]
    # Repeat with small variations so BPE has enough pair statistics to fill the vocabulary.
    return [f"{i} {line.lower() if i % 2 else line}" for i in range(40) for line in lines]


def build_tokenizer():
    """Byte-level BPE tokenizer with role tokens and a chat template, as a fast HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus_lines(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=ROLE_TOKENS,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = MAX_POSITIONS
    return fast


def build_tiny_model(out_dir: str | Path) -> Path:
    """Write config, safetensors weights and tokenizer files into `out_dir`; return it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    # The trained vocabulary may come out slightly smaller; the model's embedding must cover it.
    vocab = max(VOCAB_SIZE, len(tokenizer))
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=HIDDEN_SIZE,
        intermediate_size=2 * HIDDEN_SIZE,
        num_hidden_layers=2,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_HEADS,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.support.tinymodel OUT_DIR", file=sys.stderr)
        return 2
    print(build_tiny_model(argv[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
