import { describe, expect, it } from 'vitest';
import { waitFor } from '../support/wait.js';

describe('waitFor', () => {
  it('returns the first value that is not false, null or undefined', async () => {
    let calls = 0;
    const value = await waitFor(() => (++calls >= 3 ? `after ${calls}` : null), { intervalMs: 1 });
    expect(value).toBe('after 3');
  });

  it('keeps polling through errors and names the condition and the last error on timeout', async () => {
    await expect(
      waitFor(
        () => {
          throw new Error('still booting');
        },
        { deadlineMs: 30, intervalMs: 5, what: 'the widget' },
      ),
    ).rejects.toThrow(/timed out after 30 ms waiting for the widget: last error: still booting/);
  });
});
