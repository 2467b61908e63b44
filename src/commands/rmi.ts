import { StasisError, errorMessage } from '../errors.ts';
import { isJson, printJson, printLine } from '../output/print.ts';
import { imageStoreFrom, runtimeFrom } from './context.ts';
import { defineCommand } from './define.ts';

export const command = defineCommand({
  command: 'rmi <refs..>',
  describe: 'remove images from the image store; refused for an image a container uses',
  positionals: { refs: { type: 'string', array: true, demandOption: true, describe: 'image references as `stasis images` shows them, or digests (a prefix will do)' } },
  examples: [
    ['$0 rmi docker://127.0.0.1:5000/web:1', 'by the name it was pulled as'],
    ['$0 rmi 3f2a9c1b', 'by a digest prefix'],
  ],
  handler: async (argv) => {
    const refs = argv.refs.map(String);
    const store = await imageStoreFrom(argv);
    const containers = await runtimeFrom(argv).containers();
    const removed: { ref: string; digest: string }[] = [];
    const failures: { id: string; error: unknown }[] = [];
    for (const ref of refs) {
      try {
        const image = store.find(ref);
        if (image === null) throw new StasisError(`no image ${ref} in ${store.root}`, { hint: 'see `stasis images`' });
        const users = containers.filter((c) => c.rootfs.base === image.rootfs).map((c) => c.id);
        if (users.length > 0) {
          throw new StasisError(`image ${ref} is in use by ${users.length > 1 ? 'containers' : 'container'} ${users.join(', ')}`, { hint: `delete ${users.length > 1 ? 'them' : 'it'} first (stasis delete -f ${users.join(' ')})` });
        }
        store.remove(image);
        removed.push({ ref, digest: image.digest });
        if (!isJson()) printLine(image.digest);
      } catch (err) {
        if (refs.length === 1) throw err;
        failures.push({ id: ref, error: err });
      }
    }
    if (isJson()) printJson(removed);
    if (failures.length > 0) {
      throw new StasisError(`${failures.length} of ${refs.length} images could not be removed`, {
        details: failures.map(({ id, error }) => ({ id, error: errorMessage(error), ...(error instanceof StasisError && error.hint ? { hint: error.hint } : {}) })),
      });
    }
  },
});
