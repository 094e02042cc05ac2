"""Input-pipeline throughput: python scripts/bench_input.py [--patch_size=96 --batch_size=16].

Prints patches/s of jsr.data for each shared training folder and for both together.
"""

from absl import app, flags
import ml_collections

from jsr import data

FLAGS = flags.FLAGS
flags.DEFINE_list("sources", ["folder:../shared/data/train/bsd68",
                              "folder:../shared/data/train/sunhays80",
                              "folder:../shared/data/train/bsd68,../shared/data/train/sunhays80"],
                  "data.train sources to measure.")
flags.DEFINE_integer("patch_size", 96, "Patch size.")
flags.DEFINE_integer("batch_size", 16, "Batch size.")
flags.DEFINE_integer("num_batches", 300, "Batches timed after warm-up.")
flags.DEFINE_list("backends", ["tf", "numpy"], "data.backend values to measure.")


def main(argv):
  del argv
  for source in FLAGS.sources:
    for backend in FLAGS.backends:
      config = ml_collections.ConfigDict(dict(
          seed=0, total_steps=10**9,
          data=dict(train=source, tfds_data_dir="", patch_size=FLAGS.patch_size,
                    batch_size=FLAGS.batch_size, augment=True, backend=backend)))
      r = data.benchmark(config, FLAGS.num_batches)
      print(f"[{backend}] {source}: {r['images']} images decoded in {r['load_s']:.1f}s; "
            f"{r['patches_per_s']:.0f} patches/s (patch {FLAGS.patch_size}, batch "
            f"{FLAGS.batch_size}, {r['cpu_count']} CPUs)")


if __name__ == "__main__":
  app.run(main)
