"""The toolkit every built-in adapter is written with, one module per concept:

* ``surgery``: what every in-place wrapper needs: the dtype rule for new tensors, initialisers that
  leave meta tensors alone, the ``LinearWrapper`` base (a frozen ``nn.Linear`` as child ``base``),
  freezing, replacing the target modules, finding the wrappers again;
* ``lowrank``: ``LowRankLinear`` (an additive update that is linear in x: named components, one dense
  dW for merging and the SVD analyses) and ``LowRankAdapter``, the plug-in base of the low-rank
  methods written in plain torch (MSPLoRA, SeRA, LoRA², MELoRA, MoSLoRA, DyLoRA);
* ``bottleneck``: the bottleneck adapters on a projection's output (Adapter-H, Adapter-P);
* ``peft_tuner``: ``PeftAdapter``, the plug-in base of the methods peft implements (a subclass states
  its peft config), and ``PeftLoraAdapter`` for peft's LoRA variants (a variant is a few keywords).

The package name starts with ``_``: the registry's discovery skips it (it registers nothing).
"""
