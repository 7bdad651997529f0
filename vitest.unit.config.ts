// The `unit` project of vitest.config.ts on its own, for tools that take one config file and
// cannot pick a project: Stryker's Vitest runner (stryker.config.mjs, `npm run mutate`). The
// project is read from vitest.config.ts, so the two never drift apart.
import { defineConfig, type TestProjectInlineConfiguration } from 'vitest/config';
import base from './vitest.config.ts';

const unit = (base.test?.projects ?? []).find((p): p is TestProjectInlineConfiguration => typeof p === 'object' && 'test' in p && p.test?.name === 'unit');
if (!unit) throw new Error('vitest.config.ts has no `unit` project');

export default defineConfig({ resolve: base.resolve, test: unit.test });
