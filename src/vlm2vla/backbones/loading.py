"""Find a checkpoint folder (local path or hub cache) and load its processor.

Every load goes through a local folder: a hub id is first looked up in the local Hugging Face
cache, and downloaded only when the caller allows it and the environment is online. transformers
itself would probe the network (e.g. for adapter files) even with ``local_files_only=True``, which
hangs for ~20 s per file on an offline machine; resolving to a folder first avoids that.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from pathlib import Path

from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer, ProcessorMixin
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

logger = logging.getLogger(__name__)

# The built-in default's name: `vlm2vla pretrain model=tiny` builds it; there is no folder or hub id by that name.
TINY_MODEL = "tiny"


class VLMLoadError(RuntimeError):
    """A VLM checkpoint could not be found or loaded; the message says what to do."""


def resolve_checkpoint(name_or_path: str, *, local_files_only: bool | None = None) -> Path:
    """Local folder holding ``name_or_path``'s files.

    Args:
        name_or_path: a folder written by ``save_pretrained`` or a hub id ("owner/name").
        local_files_only: True = never download; False = download when not cached; None = download
            only when ``HF_HUB_OFFLINE`` is not set.

    Returns:
        The folder.

    Raises:
        VLMLoadError: the folder does not exist, or the hub id is not cached and cannot be fetched.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if name_or_path == TINY_MODEL:
        raise VLMLoadError(_tiny_message())
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1 or path.exists():
        raise VLMLoadError(f"VLM checkpoint folder {name_or_path!r} does not exist (or is not a folder); "
                           "pass a folder written by save_pretrained, or a hub id like 'owner/name'."
                           + _runs_hint(path))
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(name_or_path, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        pass
    offline = local_files_only or (local_files_only is None and _offline_env())
    if offline:
        raise VLMLoadError(_not_cached_message(name_or_path))
    try:
        logger.info("downloading %s from the Hugging Face hub", name_or_path)
        return Path(snapshot_download(name_or_path))
    except Exception as err:  # network, auth, missing repo: all end in the same advice
        raise VLMLoadError(f"{_not_cached_message(name_or_path)} Download attempt failed: {err}") from err


def _tiny_message() -> str:
    """Where the built-in tiny VLM comes from: only pretraining builds it; every later stage reads its folder."""
    return (f"'{TINY_MODEL}' is the built-in tiny VLM, which only `vlm2vla pretrain model={TINY_MODEL}` (e.g. "
            f"`vlm2vla pretrain --config pretrain_tiny`) builds and trains; later stages take the folder it writes, "
            f"<run_dir>/model: pass model=runs/pretrain/model (the default run_dir).{_runs_hint(Path('runs/x/model'))}")


def _runs_hint(path: Path) -> str:
    """Names trained VLM folders (<run_dir>/model) beside the run directory of `path`, if any."""
    runs = path.parent.parent if path.name == "model" else path.parent
    found = sorted(str(p.parent) for p in runs.glob("*/model/config.json"))[:5] if runs.is_dir() else []
    return f" VLM folders found in {runs}: {', '.join(found)}." if found else ""


def _offline_env() -> bool:
    """True when HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE forbid downloads."""
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _not_cached_message(name: str) -> str:
    """Plain advice for a hub id that is not in the local cache."""
    from huggingface_hub import constants

    return (f"VLM {name!r} is not a local folder and is not cached locally ({constants.HF_HUB_CACHE}), and nothing "
            "can be downloaded here (offline: local_files_only=True or HF_HUB_OFFLINE=1). Download it on a "
            f"machine with network (`hf download {name} --local-dir DIR`), copy DIR here and pass its path instead "
            "of the hub id.")


def load_processor(folder: Path, *, trust_remote_code: bool = False) -> ProcessorMixin:
    """The checkpoint's processor, image-only when video support is not installable.

    Qwen2-VL / SmolVLM processors include a video processor that needs torchvision; vlm2vla feeds
    images only, so without torchvision the processor is rebuilt from its tokenizer, image
    processor (PIL backend) and chat template.

    Args:
        folder: checkpoint folder.
        trust_remote_code: allow custom processor code from the checkpoint.

    Returns:
        The processor.
    """
    try:
        return AutoProcessor.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (ImportError, OSError) as err:
        # No torchvision: ImportError; a folder saved image-only: OSError about the video config.
        if not any(word in str(err).lower() for word in ("torchvision", "video")):
            raise
        logger.info("loading %s without its video processor (%s)", folder, str(err).splitlines()[0])
        return _image_only_processor(folder, trust_remote_code)


_IMAGE_ONLY: dict[str, type] = {}


class _NoVideoProcessor:
    """Stands in for the video processor of an image-only processor: some processors (SmolVLM's) read its
    frame-sampling defaults in apply_chat_template even when a conversation holds no video."""

    num_frames = None
    fps = None

    def __bool__(self) -> bool:
        return False


NO_VIDEO = _NoVideoProcessor()


def image_only_class(cls: type[ProcessorMixin]) -> type[ProcessorMixin]:
    """A subclass of processor class ``cls`` that has no video processor attribute.

    Args:
        cls: e.g. Qwen2VLProcessor.

    Returns:
        The subclass (one per ``cls``). Its ``__name__`` is ``cls``'s, so save_pretrained records the
        real class; its qualified name ``ImageOnly<cls>`` resolves through this module, so it pickles
        (DataLoader workers, also spawned ones).
    """
    key = f"ImageOnly{cls.__name__}"
    if key not in _IMAGE_ONLY:

        class ImageOnly(cls):  # type: ignore[valid-type, misc]
            video_processor = NO_VIDEO

            @classmethod
            def get_attributes(klass) -> list[str]:
                return [a for a in super().get_attributes() if "video" not in a]

        ImageOnly.__name__, ImageOnly.__qualname__, ImageOnly.__module__ = cls.__name__, key, __name__
        _IMAGE_ONLY[key] = ImageOnly
    return _IMAGE_ONLY[key]


def __getattr__(name: str) -> type:
    """Resolve ``ImageOnly<ProcessorClass>`` (for unpickling in a fresh process)."""
    if name.startswith("ImageOnly"):
        import transformers

        return image_only_class(getattr(transformers, name[len("ImageOnly"):]))
    raise AttributeError(name)


def _image_only_processor(folder: Path, trust_remote_code: bool) -> ProcessorMixin:
    """Rebuild the processor of ``folder`` from its parts, without the video processor."""
    import transformers

    class_name = _processor_class_name(folder)
    cls = image_only_class(getattr(transformers, class_name))
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    image_processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=trust_remote_code)
    kwargs = _processor_kwargs(folder)
    if "video_processor" in inspect.signature(cls.__init__).parameters:
        kwargs["video_processor"] = NO_VIDEO  # SmolVLM's processor takes it as a required argument
    return cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=_chat_template(folder, tokenizer),
               **kwargs)


def _processor_kwargs(folder: Path) -> dict:
    """The processor's own settings saved in processor_config.json (e.g. SmolVLM's image_seq_len), without
    the sub-processors' configs, which are loaded on their own."""
    file = folder / "processor_config.json"
    if not file.is_file():
        return {}
    data = json.loads(file.read_text())
    return {k: v for k, v in data.items() if k != "processor_class" and not isinstance(v, dict)}


def _processor_class_name(folder: Path) -> str:
    """Processor class named by the folder's processor config, else the model type's default."""
    for name in ("processor_config.json", "preprocessor_config.json"):
        file = folder / name
        if file.exists() and "processor_class" in (data := json.loads(file.read_text())):
            return data["processor_class"]
    model_type = json.loads((folder / "config.json").read_text())["model_type"]
    return PROCESSOR_MAPPING_NAMES[model_type]


def _chat_template(folder: Path, tokenizer) -> str | None:
    """The chat template saved with the processor (jinja or json file), else the tokenizer's."""
    if (folder / "chat_template.jinja").exists():
        return (folder / "chat_template.jinja").read_text()
    if (folder / "chat_template.json").exists():
        return json.loads((folder / "chat_template.json").read_text())["chat_template"]
    return getattr(tokenizer, "chat_template", None)
