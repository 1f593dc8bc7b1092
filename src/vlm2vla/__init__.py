"""vlm2vla: turn vision-language models into vision-language-action policies and measure each step."""

__version__ = "0.1.0"
