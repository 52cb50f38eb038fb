--- Ghost text for Neovim 0.11, which has no built-in inline completion: sends its own
--- `textDocument/inlineCompletion` requests while typing (debounced, cancelling the previous one),
--- draws the first item as extmarks (inline virtual text + virtual lines), and accepts, dismisses
--- or cycles items. Not here: keymaps and the 0.12 built-in path (init.lua chooses).
local M = {}

local METHOD = "textDocument/inlineCompletion"
local ns = vim.api.nvim_create_namespace("msa_lsp.inline")
M.namespace = ns

--- Per buffer: { client_id, timer, request_id, items, index, anchor = {row, col, tick}, enabled }
local state = {}

vim.api.nvim_set_hl(0, "MsaGhostText", { link = "Comment", default = true })

local function buf_state(bufnr)
  state[bufnr] = state[bufnr] or { index = 1, items = {} }
  return state[bufnr]
end

local function client_of(bufnr)
  local s = state[bufnr]
  return s and s.client_id and vim.lsp.get_client_by_id(s.client_id)
end

local function item_text(item)
  local text = item.insertText
  if type(text) == "table" then
    -- a snippet: show and insert its plain text (placeholders keep their default text)
    text = text.value:gsub("%$%{%d+:([^}]*)%}", "%1"):gsub("%$%d+", "")
  end
  return text or ""
end

--- Byte column of an LSP position on `row` of the buffer.
local function byte_col(bufnr, row, character, encoding)
  local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ""
  return vim.str_byteindex(line, encoding, math.min(character, vim.str_utfindex(line, encoding)), false)
end

--- Where the item's text goes ({start_row, start_col, end_row, end_col}, bytes) and the ghost part.
local function placement(bufnr, item, encoding, row, col)
  local text = item_text(item)
  if not item.range then
    return { row, col, row, col }, text
  end
  local r = item.range
  local span = {
    r.start.line, byte_col(bufnr, r.start.line, r.start.character, encoding),
    r["end"].line, byte_col(bufnr, r["end"].line, r["end"].character, encoding),
  }
  if span[1] ~= row or span[2] > col then
    return nil
  end
  -- text already typed between the range start and the cursor must be a prefix of the item
  local typed = vim.api.nvim_buf_get_text(bufnr, row, span[2], row, col, {})[1] or ""
  if text:sub(1, #typed) ~= typed then
    return nil
  end
  return span, text:sub(#typed + 1)
end

function M.clear(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  if vim.api.nvim_buf_is_valid(bufnr) then
    vim.api.nvim_buf_clear_namespace(bufnr, ns, 0, -1)
  end
  local s = state[bufnr]
  if s then
    s.items, s.index, s.shown = {}, 1, nil
  end
end

local function cancel(bufnr)
  local s = state[bufnr]
  if not s then return end
  if s.timer then
    s.timer:stop()
  end
  local client = client_of(bufnr)
  if client and s.request_id then
    client:cancel_request(s.request_id)
  end
  s.request_id = nil
end

local function render(bufnr)
  local s = state[bufnr]
  vim.api.nvim_buf_clear_namespace(bufnr, ns, 0, -1)
  s.shown = nil
  local item = s.items[s.index]
  local client = client_of(bufnr)
  if not item or not client or vim.api.nvim_get_current_buf() ~= bufnr then return end
  local cursor = vim.api.nvim_win_get_cursor(0)
  local row, col = cursor[1] - 1, cursor[2]
  if s.anchor.row ~= row or s.anchor.col ~= col or s.anchor.tick ~= vim.b[bufnr].changedtick then
    return -- the text moved on since the request; a newer one is on its way
  end
  local span, ghost = placement(bufnr, item, client.offset_encoding, row, col)
  if not span or ghost == "" then return end
  local lines = vim.split(ghost, "\n", { plain = true })
  local virt_lines = {}
  for i = 2, #lines do
    virt_lines[#virt_lines + 1] = { { lines[i], "MsaGhostText" } }
  end
  vim.api.nvim_buf_set_extmark(bufnr, ns, row, col, {
    virt_text = { { lines[1], "MsaGhostText" } },
    virt_text_pos = "inline",
    virt_lines = #virt_lines > 0 and virt_lines or nil,
    hl_mode = "combine",
  })
  s.shown = { item = item, span = span, text = item_text(item) }
end

--- Sends the request now for the cursor position (cancelling an earlier one).
function M.request(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local s = buf_state(bufnr)
  cancel(bufnr)
  local client = client_of(bufnr)
  if not client or not s.enabled or vim.api.nvim_get_current_buf() ~= bufnr then return end
  local win = vim.api.nvim_get_current_win()
  local cursor = vim.api.nvim_win_get_cursor(win)
  s.anchor = { row = cursor[1] - 1, col = cursor[2], tick = vim.b[bufnr].changedtick }
  local params = vim.lsp.util.make_position_params(win, client.offset_encoding)
  params.context = { triggerKind = 2 } -- Automatic
  local ok, id
  ok, id = client:request(METHOD, params, function(err, result)
    if s.request_id == id then s.request_id = nil end
    if err then
      if err.code ~= -32800 then -- RequestCancelled is expected while typing
        vim.notify(("msa_lsp: inline completion failed: %s"):format(err.message), vim.log.levels.WARN)
      end
      return
    end
    local items = result and (result.items or result) or {}
    s.items, s.index = vim.islist(items) and items or {}, 1
    render(bufnr)
  end, bufnr)
  if ok then s.request_id = id end
end

--- Restarts the debounce timer; the request goes out when typing pauses.
function M.schedule(bufnr, delay_ms)
  local s = buf_state(bufnr)
  M.clear(bufnr)
  cancel(bufnr)
  if not s.enabled then return end
  s.timer = s.timer or vim.uv.new_timer()
  s.timer:start(delay_ms, 0, vim.schedule_wrap(function()
    if vim.api.nvim_buf_is_valid(bufnr) and vim.api.nvim_get_mode().mode:sub(1, 1) == "i" then
      M.request(bufnr)
    end
  end))
end

function M.visible(bufnr)
  local s = state[bufnr or vim.api.nvim_get_current_buf()]
  return s ~= nil and s.shown ~= nil
end

--- Inserts the shown item; returns false when nothing is shown.
function M.accept(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local s = state[bufnr]
  if not s or not s.shown then return false end
  local shown, client = s.shown, client_of(bufnr)
  M.clear(bufnr)
  cancel(bufnr)
  local span = shown.span
  local lines = vim.split(shown.text, "\n", { plain = true })
  vim.api.nvim_buf_set_text(bufnr, span[1], span[2], span[3], span[4], lines)
  local end_row = span[1] + #lines - 1
  local end_col = (#lines == 1 and span[2] or 0) + #lines[#lines]
  vim.api.nvim_win_set_cursor(0, { end_row + 1, end_col })
  if shown.item.command and client then
    client:exec_cmd(shown.item.command, { bufnr = bufnr })
  end
  return true
end

--- Shows the next (count = 1) or previous (count = -1) item of the last answer.
function M.select(count, bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local s = state[bufnr]
  if not s or #s.items < 2 then return false end
  s.index = (s.index - 1 + count) % #s.items + 1
  render(bufnr)
  return true
end

--- Starts ghost text for a buffer attached to `client`.
function M.attach(bufnr, client, opts)
  local s = buf_state(bufnr)
  s.client_id, s.enabled = client.id, opts.enable ~= false
  local group = vim.api.nvim_create_augroup("msa_lsp.inline." .. bufnr, { clear = true })
  vim.api.nvim_create_autocmd({ "TextChangedI", "TextChangedP" }, {
    group = group, buffer = bufnr,
    callback = function() M.schedule(bufnr, opts.debounce_ms) end,
  })
  vim.api.nvim_create_autocmd("CursorMovedI", {
    group = group, buffer = bufnr,
    callback = function()
      local a, cursor = s.anchor, vim.api.nvim_win_get_cursor(0)
      if s.shown and a and (a.row ~= cursor[1] - 1 or a.col ~= cursor[2]) then M.clear(bufnr) end
    end,
  })
  vim.api.nvim_create_autocmd({ "InsertLeave", "BufLeave" }, {
    group = group, buffer = bufnr,
    callback = function() cancel(bufnr); M.clear(bufnr) end,
  })
  vim.api.nvim_create_autocmd("LspDetach", {
    group = group, buffer = bufnr,
    callback = function(ev)
      if ev.data.client_id == s.client_id then
        cancel(bufnr); M.clear(bufnr)
        if s.timer then s.timer:close() end
        state[bufnr] = nil
        vim.api.nvim_del_augroup_by_id(group)
      end
    end,
  })
end

function M.set_enabled(enabled)
  for bufnr, s in pairs(state) do
    s.enabled = enabled
    if not enabled then cancel(bufnr); M.clear(bufnr) end
  end
end

return M
