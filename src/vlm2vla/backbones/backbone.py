"""VLMBackbone: one interface over any transformers image-text-to-text VLM.

    backbone = VLMBackbone.from_pretrained("path/or/hub-id")
    batch = backbone.collate([ChatExample(images=[img], messages=[...])], num_queries=1)
    out = backbone(batch, query_embeds=queries)          # loss on answer tokens, logits
    h = backbone.hidden_states(batch)                    # (num_layers + 1) x [B, L, D]

Family differences (freeze-group module names, pixel layout, prompt quirks) come from
``families.FAMILIES``; the model and processor are whatever ``AutoModelForImageTextToText`` and
``AutoProcessor`` load, so a real checkpoint and the tiny test models run the same code.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForImageTextToText, PreTrainedModel, ProcessorMixin
from transformers.utils import ModelOutput

from vlm2vla.backbones.chat import ChatExample
from vlm2vla.backbones.encoding import IGNORE, Collator
from vlm2vla.backbones.families import FREEZE_GROUPS, Family, family_for, group_of
from vlm2vla.backbones.loading import VLMLoadError, load_processor, resolve_checkpoint

logger = logging.getLogger(__name__)


class VLMBackbone(torch.nn.Module):
    """A transformers VLM with its processor, chat-format collation, query slots and freeze groups.

    Attributes:
        model: the transformers model.
        processor: its processor (tokenizer, image processor, chat template).
        family: family name from the table (e.g. "idefics3", "qwen2_vl", "paligemma", "generic").
        name_or_path: what it was loaded from.
        hidden_size: language-model width D.
        num_layers: language-model layers.
    """

    def __init__(self, model: PreTrainedModel, processor: ProcessorMixin, name_or_path: str) -> None:
        super().__init__()
        self.model = model
        self.processor = processor
        self.name_or_path = name_or_path
        self._family = family_for(model.config.model_type)
        self.family = self._family.name
        text = model.config.get_text_config()
        self.hidden_size = int(text.hidden_size)
        self.num_layers = int(text.num_hidden_layers)
        self._forward_keys = set(inspect.signature(model.forward).parameters)
        processor.tokenizer.padding_side = "left"

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, name_or_path: str, *, trust_remote_code: bool = False, dtype=None,
                        local_files_only: bool | None = None) -> VLMBackbone:
        """Load model + processor from a folder or a hub id.

        Args:
            name_or_path: folder written by save_pretrained, or hub id.
            trust_remote_code: allow custom code from the checkpoint (off by default).
            dtype: torch dtype of the weights (None = the checkpoint's).
            local_files_only: True never downloads; None downloads only when HF_HUB_OFFLINE is unset.

        Returns:
            The backbone.

        Raises:
            VLMLoadError: not found locally and not downloadable, or not an image-text-to-text model.
        """
        folder = resolve_checkpoint(name_or_path, local_files_only=local_files_only)
        try:
            processor = load_processor(folder, trust_remote_code=trust_remote_code)
            model = AutoModelForImageTextToText.from_pretrained(folder, dtype=dtype,
                                                                trust_remote_code=trust_remote_code)
        except (OSError, ValueError, KeyError) as err:
            raise VLMLoadError(f"could not load a VLM from {folder} ({name_or_path!r}): {err}. It must hold an "
                               "image-text-to-text model and its processor (save_pretrained of both).") from err
        return cls(model.eval(), processor, name_or_path)

    @classmethod
    def from_scratch(cls, name_or_path: str, *, trust_remote_code: bool = False, seed: int | None = None
                     ) -> VLMBackbone:
        """Same architecture and processor as ``name_or_path``, freshly random-initialised weights.

        Args:
            name_or_path: folder or hub id (only config and processor files are read).
            trust_remote_code: allow custom code from the checkpoint.
            seed: torch seed for the initialisation (None = current RNG state).

        Returns:
            The backbone.
        """
        folder = resolve_checkpoint(name_or_path)
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
        processor = load_processor(folder, trust_remote_code=trust_remote_code)
        if seed is not None:
            torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, trust_remote_code=trust_remote_code)
        return cls(model, processor, name_or_path)

    def save_pretrained(self, path: str | Path) -> None:
        """Save model and processor so that ``from_pretrained(path)`` loads them back.

        Args:
            path: destination folder.
        """
        self.model.save_pretrained(path)
        self.processor.save_pretrained(path)

    # ----------------------------------------------------------------------------- inputs
    def collate(self, examples: list[ChatExample], *, add_generation_prompt: bool = False, num_queries: int = 0,
                max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Batch examples in the model's own chat format (left padded).

        Args:
            examples: images + messages.
            add_generation_prompt: end each row with the assistant prompt (inference, policy prompts).
            num_queries: K query slots appended right after each row's text (see ``forward``).
            max_length: cut rows (before the query slots) to this many tokens.

        Returns:
            input_ids, attention_mask, labels (IGNORE=-100 outside answer tokens, end-of-turn token
            included) [B, L], image tensors and family extras, and ``query_mask`` [B, L] bool with
            exactly K True per row (the last K positions) when K > 0.
        """
        return self.collator()(examples, add_generation_prompt=add_generation_prompt, num_queries=num_queries,
                               max_length=max_length)

    def collator(self) -> Collator:
        """A picklable callable equal to ``collate`` (holds the processor, not the model), for DataLoaders."""
        return Collator(self.processor, self._family, self.name_or_path)

    def _pad_id(self) -> int:
        """Padding id: the tokenizer's pad token, else its eos token."""
        return self.collator().pad_id

    # ----------------------------------------------------------------------------- forward
    def forward(self, batch: dict, query_embeds: torch.Tensor | None = None,
                output_hidden_states: bool = False, use_cache: bool = False) -> ModelOutput:
        """Run the model; next-token loss on ``labels`` when the batch has answer tokens.

        Args:
            batch: output of ``collate`` (on any device; moved to the model's).
            query_embeds: [K, D] or [B, K, D] embeddings written into the ``query_mask`` slots.
            output_hidden_states: also return every layer's hidden states.
            use_cache: also return ``past_key_values``, every layer's keys and values (a transformers
                Cache) — action experts attend to them.

        Returns:
            The transformers output (loss, logits [B, L, V], hidden_states / past_key_values when asked).
        """
        inputs = self._model_inputs(batch)
        with self._query_hook(batch.get("query_mask"), query_embeds):
            return self.model(**inputs, output_hidden_states=output_hidden_states, use_cache=use_cache,
                              return_dict=True)

    def hidden_states(self, batch: dict, query_embeds: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Language-model hidden states of every layer.

        Args:
            batch: output of ``collate``.
            query_embeds: as in ``forward``.

        Returns:
            (num_layers + 1) tensors [B, L, D]: the embeddings, then each layer's output.
        """
        batch = {k: v for k, v in batch.items() if k != "labels"}
        return tuple(self.forward(batch, query_embeds, output_hidden_states=True).hidden_states)

    @torch.no_grad()
    def generate(self, examples: list[ChatExample], max_new_tokens: int = 16) -> list[str]:
        """Greedy answers.

        Args:
            examples: prompts (images + messages ending with a user turn).
            max_new_tokens: generation budget per answer.

        Returns:
            Decoded answers without special tokens, stripped.
        """
        batch = self.collate(examples, add_generation_prompt=True)
        inputs = self._model_inputs({k: v for k, v in batch.items() if k != "labels"})
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                  pad_token_id=self._pad_id())
        new = out[:, batch["input_ids"].shape[1]:]
        return [t.strip() for t in self.processor.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def _model_inputs(self, batch: dict) -> dict:
        """Batch entries the model's forward accepts, on its device; pixels in its dtype."""
        device, dtype = self.model.device, self.model.dtype
        out = {}
        for key, value in batch.items():
            if key not in self._forward_keys or value is None:
                continue
            if torch.is_tensor(value):
                value = value.to(device, dtype if value.is_floating_point() else None)
            out[key] = value
        if "labels" in out and not bool((out["labels"] != IGNORE).any()):
            del out["labels"]  # a prompt-only batch: no loss rather than NaN
        return out

    @contextmanager
    def _query_hook(self, query_mask: torch.Tensor | None, query_embeds: torch.Tensor | None) -> Iterator[None]:
        """While active, the input-embedding layer writes ``query_embeds`` into ``query_mask`` slots.

        A forward hook on the input embeddings works for every family, because each embeds
        ``input_ids`` once before merging image features (which only touch image-token slots).
        """
        if query_embeds is None:
            yield
            return
        if query_mask is None:
            raise ValueError("query_embeds given but the batch has no query_mask; collate with num_queries=K")
        mask = query_mask.to(self.model.device)
        counts = mask.sum(dim=1)
        k = query_embeds.shape[-2]
        if not bool((counts == k).all()):
            raise ValueError(f"query_embeds has K={k} but query_mask has {counts.tolist()} slots per row")

        def hook(module, args, output):
            if output.shape[:2] != mask.shape:  # another call (e.g. a later generation step)
                return output
            q = query_embeds.to(output.device, output.dtype)
            q = q.expand(mask.shape[0], -1, -1) if q.dim() == 2 else q
            return output.masked_scatter(mask.unsqueeze(-1), q.reshape(-1, q.shape[-1]))

        handle = self.model.get_input_embeddings().register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    # ----------------------------------------------------------------------------- parameters
    def parameter_groups(self) -> dict[str, list[str]]:
        """Freeze group -> parameter names; every parameter is in exactly one group.

        Returns:
            Keys FREEZE_GROUPS (always present) plus "other" when some parameter matches no group.
        """
        embedding_ids = {id(p) for p in self.model.get_input_embeddings().parameters()}
        embedding_names = {n for n, p in self.model.named_parameters() if id(p) in embedding_ids}
        groups: dict[str, list[str]] = {g: [] for g in FREEZE_GROUPS}
        for name, _ in self.model.named_parameters():
            groups.setdefault(group_of(name, self._family, embedding_names), []).append(name)
        return groups

    def freeze(self, groups: Iterable[str]) -> None:
        """Set requires_grad=False on every parameter of the given groups.

        Args:
            groups: names from FREEZE_GROUPS.

        Raises:
            ValueError: an unknown group name.
        """
        groups = list(groups)
        unknown = [g for g in groups if g not in FREEZE_GROUPS]
        if unknown:
            raise ValueError(f"unknown freeze group(s) {unknown}; choose from {FREEZE_GROUPS}")
        names = {n for g in groups for n in self.parameter_groups()[g]}
        for name, param in self.model.named_parameters():
            if name in names:
                param.requires_grad_(False)
        logger.info("froze %s (%d tensors)", groups, len(names))

    @property
    def family_record(self) -> Family:
        """The Family table entry (module prefixes, pixel layout)."""
        return self._family


def load_backbone(name_or_path: str, *, trust_remote_code: bool = False, dtype: str = "",
                  scratch: bool = False, seed: int | None = None) -> VLMBackbone:
    """The one way stages load a VLM: its weights, or (scratch=True) its architecture with random weights.

    Args:
        name_or_path: a folder written by save_pretrained, or a hub id in the local cache.
        trust_remote_code: allow custom code from the checkpoint.
        dtype: torch dtype name for the weights ("" = the checkpoint's own).
        scratch: random-initialise instead of loading the weights (VLM4VLA's scratch baseline).
        seed: the random initialisation's seed (scratch only).

    Raises:
        ValueError: the model cannot be loaded (no such folder, a hub id not in the local cache while
            offline, not an image-text-to-text model); the message says which and what to do.
    """
    try:
        if scratch:
            return VLMBackbone.from_scratch(name_or_path, trust_remote_code=trust_remote_code, seed=seed)
        return VLMBackbone.from_pretrained(name_or_path, trust_remote_code=trust_remote_code,
                                           dtype=getattr(torch, dtype) if dtype else None)
    except VLMLoadError as err:  # already says what was wrong and what to do
        raise ValueError(f"Cannot load model {name_or_path!r}: {err}") from err
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(
            f"Cannot load model {name_or_path!r} ({type(err).__name__}: {err}). Pass a folder written by "
            "save_pretrained (e.g. runs/pretrain/model) or a hub id already in the local cache."
        ) from err
