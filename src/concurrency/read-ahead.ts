/**
 * `load(i)` for items `at` to `at + ahead` when item `at` is asked for, each started once: reads in
 * flight ahead of the one needed. A rejection nobody asks for is not reported as unhandled.
 */
export function readAhead<T>(ahead: number, count: number, load: (i: number) => Promise<T>): (at: number) => Promise<T> {
  const started = new Map<number, Promise<T>>();
  return (at) => {
    for (let i = at; i < Math.min(count, at + 1 + ahead); i++) {
      if (started.has(i)) continue;
      const value = load(i);
      value.catch(() => undefined);
      started.set(i, value);
    }
    const value = started.get(at)!;
    started.delete(at);
    return value;
  };
}
