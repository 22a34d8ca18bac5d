"""The jobs that drive the stages above the ML library: train-and-report, the closed loop, the distill job, the
closed-loop verdicts and the model's report sections. They import the analysis and model layers; nothing below
imports them (docs/architecture.md)."""
