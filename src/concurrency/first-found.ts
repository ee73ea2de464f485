/**
 * The first result `visit` gives (other than undefined) for `items`, in their order, visiting 1,
 * then 4, then 16 at a time: for searches from the newest end of a list, where the answer is nearly
 * always among the first few and each visit reads an object.
 */
export async function firstFound<T, R>(items: readonly T[], visit: (item: T) => Promise<R | undefined>): Promise<R | undefined> {
  for (let at = 0, batch = 1; at < items.length; at += batch, batch = Math.min(batch * 4, 16)) {
    const found = (await Promise.all(items.slice(at, at + batch).map(visit))).find((result) => result !== undefined);
    if (found !== undefined) return found;
  }
  return undefined;
}
