/** Test helper: which kernels a piece of work dispatches. */
import { CommandBatch } from "../../lib/gpu/batch.ts";

/** The kernels `run` records (CommandBatch.dispatch), by name ("file:entry[DEFINES]"). */
export async function kernelsOf(run: () => unknown): Promise<string[]> {
  const proto = CommandBatch.prototype;
  const dispatch = proto.dispatch;
  const kernels: string[] = [];
  proto.dispatch = function (this: CommandBatch, ...a: Parameters<CommandBatch["dispatch"]>) {
    kernels.push(a[0].name);
    return dispatch.apply(this, a);
  };
  try {
    await run();
  } finally {
    proto.dispatch = dispatch;
  }
  return kernels;
}
