"""Chat-template fixtures (tests/fixtures/chat/): transformers' rendering of each family's chat
format, for tests/model/chat.test.ts to compare with @huggingface/jinja's.

For each family, the template in tests/fixtures/chat/<family>.jinja is attached to a tokenizer
(the bundled model's tokenizer.json, with the family's special tokens) and saved the way
transformers saves it (tokenizer_config.json + chat_template.jinja) in <family>/, and
`apply_chat_template(..., tokenize=False)` is recorded for several conversations in
<family>.json (or the exception's message where the template refuses one).

Usage (transformers 5.17):
    python tools/make_chat_fixtures.py
"""

import json
from pathlib import Path

import transformers
from transformers import PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "chat"
TOKENIZER = ROOT / "models" / "sotu-llama" / "tokenizer.json"

SPECIAL = {
    "qwen2": dict(eos_token="<|im_end|>", pad_token="<|endoftext|>"),
    "qwen3": dict(eos_token="<|im_end|>", pad_token="<|endoftext|>"),
    "mistral": dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>"),
    "phi3": dict(bos_token="<s>", eos_token="<|endoftext|>", unk_token="<unk>"),
}

SYSTEM = {"role": "system", "content": "You answer in one short sentence."}
USER1 = {"role": "user", "content": "What is NF4?"}
ASSISTANT1 = {"role": "assistant", "content": "A 4-bit data type whose levels are normal quantiles."}
THINKING = {
    "role": "assistant",
    "content": "<think>\nThe user asks about NF4; keep it short.\n</think>\n\n"
               "A 4-bit type with normal-quantile levels.",
}
USER2 = {"role": "user", "content": "And LLM.int8()?  Say it\nin two lines."}

CASES = [
    ("one user turn", [USER1], dict(add_generation_prompt=True)),
    ("system and two user turns", [SYSTEM, USER1, ASSISTANT1, USER2],
     dict(add_generation_prompt=True)),
    ("ends with the assistant, no generation prompt", [USER1, ASSISTANT1],
     dict(add_generation_prompt=False)),
    ("an earlier answer with reasoning", [USER1, THINKING, USER2],
     dict(add_generation_prompt=True)),
    ("reasoning in the last answer", [USER1, THINKING], dict(add_generation_prompt=False)),
    ("thinking turned off", [USER1], dict(add_generation_prompt=True, enable_thinking=False)),
    ("two user turns in a row", [USER1, USER2], dict(add_generation_prompt=True)),
    ("an unknown role", [{"role": "tool", "content": "42"}, USER1],
     dict(add_generation_prompt=True)),
]


def main() -> None:
    for family, special in SPECIAL.items():
        template = (OUT / f"{family}.jinja").read_text()
        tok = PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER), **special)
        tok.chat_template = template
        saved = OUT / family
        tok.save_pretrained(saved)
        (saved / "tokenizer.json").unlink()  # the bundled model's; tests copy it from there
        cases = []
        for name, messages, kwargs in CASES:
            case = {"name": name, "messages": messages, **kwargs}
            try:
                case["rendered"] = tok.apply_chat_template(messages, tokenize=False, **kwargs)
            except Exception as e:  # the template's raise_exception
                case["error"] = str(e)
            cases.append(case)
        fixture = {
            "reference": f"transformers {transformers.__version__} apply_chat_template",
            "special_tokens": special,
            "cases": cases,
        }
        (OUT / f"{family}.json").write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n")
        print(family, [("error" if "error" in c else len(c["rendered"])) for c in cases])


if __name__ == "__main__":
    main()
