"""Benchmarks: ``python -m jaxseg.bench`` times the train and inference steps beside peer
libraries (`steps`, `peers`, `timing`); ``python -m jaxseg.bench.epoch`` times whole training
epochs (data, steps, BatchNorm statistics, validation, checkpoints) beside the same epochs in
segmentation_models_pytorch; ``python -m jaxseg.bench.run`` times whole training commands,
start-up and wrap-up included, beside smp's run of the same settings;
``python -m jaxseg.bench.pipeline`` times the input pipeline;
``python -m jaxseg.bench.profile`` traces a train step and ranks XLA's operations."""
