# Runtime of the DVPS configs: iteration-based logging/checkpoints, the DVPS visualizer
# (tools/test.py --show-dir draws image | panoptic tracks | depth through the default
# VideoVisualizationHook), the class-set check.
_base_ = './default_runtime.py'
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=10000, max_keep_ckpts=3),
)
log_processor = dict(by_epoch=False)
visualizer = dict(
    type='DVPSLocalVisualizer',
    _delete_=True,
    vis_backends=[dict(type='LocalVisBackend')],
    name='visualizer',
)
custom_hooks = [
    dict(type='CheckpointCheckHook'),
    dict(type='RNGStateHook'),
    dict(type='NonFiniteLossHook', action='raise'),
    # the model's classes, thing ids, label divisor and void label must be the dataset's
    dict(type='PanopticClassCheckHook'),
]
