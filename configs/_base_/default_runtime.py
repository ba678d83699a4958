# Runtime defaults shared by every mmvideoeq config (mmdet 3.x conventions).
default_scope = 'mmvideoeq'
custom_imports = dict(imports=['mmvideoeq.utils.register'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # off until tools/test.py --show/--show-dir switches it on; frames go to <setting>/<video>/
    visualization=dict(type='VideoVisualizationHook', draw=False),
)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
# mmdet's DetLocalVisualizer that also draws a semantic map (DetectoRS HTC's COCO-stuff labels) with
# its own names and colours and keeps labels inside the frame
visualizer = dict(
    type='DetStuffLocalVisualizer',
    _scope_='mmvideoeq',
    vis_backends=vis_backends,
    name='visualizer',
)
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
# a checkpoint trained on another class list, or one that leaves weights missing, is an error
# (not silently mislabelled predictions or an evaluation of random weights)
custom_hooks = [
    dict(type='CheckpointCheckHook'),
    # a resumed training continues every random generator where it stopped (exact resume)
    dict(type='RNGStateHook'),
    # stop at the first non-finite loss, never save non-finite weights
    dict(type='NonFiniteLossHook', action='raise'),
]
