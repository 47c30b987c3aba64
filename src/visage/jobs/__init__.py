"""Stored-video face jobs: Rekognition Video's StartFaceDetection / GetFaceDetection and
StartFaceSearch / GetFaceSearch (docs/video.md).

- :mod:`~visage.jobs.operations`: the four operations, which the service routes here;
- :mod:`~visage.jobs.video`: what video is taken (checked before decoding), and its frames,
  decoded as a stream and sampled;
- :mod:`~visage.jobs.analysis`: what a job computes for each sampled frame;
- :mod:`~visage.jobs.tracker`: Person.Index, one per person through a video;
- :mod:`~visage.jobs.workers`: the threads of a server that run the queued jobs;
- :mod:`~visage.jobs.notifications`: the SNS completion message.

The queue and the results live in the store (:class:`~visage.store.base.VideoJob`), so
jobs survive a restart and several server processes share them.
"""
