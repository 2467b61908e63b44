import { isJson, isQuiet, printJson, printLine, printTable } from '../output/print.ts';
import { imageStoreFrom } from './context.ts';
import { defineCommand } from './define.ts';
import { formatBytes } from '../host/units.ts';

export const command = defineCommand({
  command: 'images',
  describe: 'list the images unpacked in the image store (--image-dir)',
  examples: [
    ['$0 images', 'references, short digests, sizes, creation times'],
    ['$0 images -q', 'only the digests'],
  ],
  handler: async (argv) => {
    const store = await imageStoreFrom(argv);
    const images = store.list();
    if (isJson()) {
      return printJson(images.map((image) => ({
        digest: image.digest,
        configDigest: image.configDigest,
        names: image.names,
        size: image.size,
        created: image.created,
        pulledAt: image.pulledAt,
        layers: image.layers,
        rootfs: image.rootfs,
        config: image.process,
      })));
    }
    if (isQuiet()) return images.forEach((image) => printLine(image.digest));
    await printTable(['REF', 'DIGEST', 'SIZE', 'CREATED'], images.map((image) => [
      image.names[image.names.length - 1] ?? '<none>',
      image.digest.slice(7, 19),
      formatBytes(image.size, { si: true }),
      image.created ?? '-',
    ]));
  },
});

