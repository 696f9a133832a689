"""Chat prompts from the model's own Jinja template (GGUF `tokenizer.chat_template`), rendered the way
Hugging Face's `apply_chat_template` does: sandboxed, trim_blocks + lstrip_blocks, with
`messages`, `add_generation_prompt`, `bos_token`, `eos_token` and `raise_exception` in scope."""
from __future__ import annotations

import datetime
from functools import lru_cache

from ..errors import PyquantError

# Used when a GGUF file carries no template: ChatML, the most common one.
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
          " + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\n' }}{% endif %}")


class ChatTemplateError(PyquantError):
    """The chat template failed to render (it raised, or used an unknown construct)."""


@lru_cache(maxsize=8)
def _compile(source: str):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])

    def raise_exception(message):
        raise ChatTemplateError(f"chat template: {message}")

    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    env.filters["tojson"] = lambda v, indent=None: __import__("json").dumps(v, indent=indent,
                                                                              ensure_ascii=False)
    return env.from_string(source)


def render_chat(template: str | None, messages: list[dict], add_generation_prompt: bool = True,
                bos_token: str = "", eos_token: str = "") -> str:
    """The prompt text for `messages` ([{"role": ..., "content": ...}, ...])."""
    try:
        return _compile(template or CHATML).render(messages=messages,
                                                   add_generation_prompt=add_generation_prompt,
                                                   bos_token=bos_token, eos_token=eos_token)
    except ChatTemplateError:
        raise
    except Exception as e:  # jinja2 syntax / undefined errors: name the cause
        raise ChatTemplateError(f"chat template failed to render: {type(e).__name__}: {e}") from e
