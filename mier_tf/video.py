"""Rollouts of a policy as animated GIFs: on disk, side by side, and in TensorBoard.

MuJoCo renders headless through EGL (`MUJOCO_GL=egl`, which importing mier_tf sets unless
the user set it; software rendering works where there is no GPU: about 50 ms a 320x240
frame on our 2-core CPU).
"""
import io
from typing import Callable, List, Sequence, Tuple

import numpy as np

Frames = List[np.ndarray]


def rollout_frames(family, task, action_fn: Callable[[np.ndarray], np.ndarray],
                   context: np.ndarray, steps: int = 200, every: int = 2,
                   size: Tuple[int, int] = (240, 180), seed: int = 0) -> Tuple[Frames, float]:
  """One episode of the policy on concat(observation, context), rendered.

  Args:
    family: the task family.
    task: one of its tasks.
    action_fn: maps context-augmented observations [1, d + c] to actions [1, a].
    context: [c] the context the policy acts on.
    steps: episode length (stops earlier if the robot falls).
    every: keep every this many frames (2: 10 frames per simulated second for the 20 Hz
      robots here).
    size: (width, height) of a frame.
    seed: seed of the episode's reset.

  Returns:
    (frames, return): the kept frames [height, width, 3] uint8, and the episode's return.
  """
  env = family.make_env(task, render_mode="rgb_array", width=size[0], height=size[1])
  try:
    observation, _ = env.reset(seed=seed)
    context = np.asarray(context, np.float32).reshape(1, -1)
    frames, total = [], 0.0
    for t in range(steps):
      if t % every == 0:
        frames.append(np.asarray(env.render(), np.uint8))
      action = action_fn(np.concatenate([np.asarray(observation, np.float32)[None], context], 1))
      observation, reward, terminated, truncated, _ = env.step(np.asarray(action)[0])
      total += float(reward)
      if terminated or truncated:
        break
    return frames, total
  finally:
    env.close()


def label(frames: Frames, text: str) -> Frames:
  """The frames with `text` written in their top-left corner."""
  from PIL import Image, ImageDraw  # pylint: disable=import-outside-toplevel
  out = []
  for frame in frames:
    image = Image.fromarray(frame)
    ImageDraw.Draw(image).text((6, 4), text, fill=(255, 255, 255))
    out.append(np.asarray(image))
  return out


def side_by_side(*videos: Frames) -> Frames:
  """Frames of several videos next to each other (a shorter one holds its last frame)."""
  length = max(len(v) for v in videos)
  padded = [list(v) + [v[-1]] * (length - len(v)) for v in videos]
  return [np.concatenate(row, axis=1) for row in zip(*padded)]


def gif_bytes(frames: Sequence[np.ndarray], fps: float = 10.0) -> bytes:
  """The frames as an animated GIF that loops."""
  import imageio  # pylint: disable=import-outside-toplevel
  buffer = io.BytesIO()
  imageio.mimsave(buffer, list(frames), format="GIF", duration=1000.0 / fps, loop=0)
  return buffer.getvalue()


def write_gif(path: str, frames: Sequence[np.ndarray], fps: float = 10.0) -> str:
  """Writes the frames as an animated GIF at path (its folder is created); returns path."""
  from mier_tf import files  # pylint: disable=import-outside-toplevel
  return files.atomic_write(path, gif_bytes(frames, fps))


def gif_summary(tag: str, frames: Sequence[np.ndarray], step: int, fps: float = 10.0,
                description: str = "") -> None:
  """An animated GIF in TensorBoard's Images tab (it shows encoded images as they are).

  Writes to the default summary writer, as tf.summary.image would.
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from tensorboard.plugins.image import metadata  # pylint: disable=import-outside-toplevel
  height, width = frames[0].shape[:2]
  tensor = tf.constant([str(width), str(height), gif_bytes(frames, fps)], tf.string)
  tf.summary.write(tag, tensor, step=step, metadata=metadata.create_summary_metadata(
      display_name=tag, description=description).SerializeToString())
