/** Where the tests find the extension, the repository and the Python that runs msa-lsp. */
import * as path from 'path';

export const EXTENSION_ROOT = path.resolve(__dirname, '..', '..');
export const REPO_ROOT = path.resolve(EXTENSION_ROOT, '..', '..');
export const PYTHON = process.env.MSA_PYTHON ?? path.join(REPO_ROOT, '.venv', 'bin', 'python');
