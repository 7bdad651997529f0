// The argument checks (src/mm/args.ts): the whole message for a negative or fractional value,
// since a user reads the value back from it. Written while mutation testing (docs/testing.md)
// found that only parts of these messages were checked.
import { describe, expect, it } from 'vitest';
import { checkAddress, checkCount } from '../../src/mm/args.ts';
import { throwsSync } from './helpers.ts';

describe('messages give the value as it was passed', () => {
  it('a negative or fractional address is shown as written, not as hex', () => {
    expect(throwsSync('EINVAL', () => checkAddress('mmap', -4096)).message).toBe('EINVAL: mmap: address -4096 is not an integer in [0, 4 GiB)');
    expect(throwsSync('EINVAL', () => checkAddress('mmap', 4096.5)).message).toBe('EINVAL: mmap: address 4096.5 is not an integer in [0, 4 GiB)');
  });

  it('an address too large is shown in hex, like every address', () => {
    expect(throwsSync('EINVAL', () => checkAddress('read', 2 ** 32)).message).toBe('EINVAL: read: address 0x100000000 is not an integer in [0, 4 GiB)');
  });

  it('a count is named and shown as written', () => {
    expect(throwsSync('EINVAL', () => checkCount('mmap', 'length', 0)).message).toBe('EINVAL: mmap: length 0 is not a positive integer');
    expect(throwsSync('EINVAL', () => checkCount('migrate', 'npages', '3')).message).toBe('EINVAL: migrate: npages 3 is not a positive integer');
    expect(checkCount('migrate', 'npages', 1)).toBe(1);
  });
});
