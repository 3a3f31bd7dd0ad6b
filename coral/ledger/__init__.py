"""Double-entry payment ledger: accounts, transfers, two-phase escrow, receipts.

The core (``LedgerState``) is a pure state machine with TigerBeetle's
semantics; ``LedgerService`` is the async facade the node uses over any
``LedgerStore`` adapter (SQLite or PostgreSQL, in ``coral.store``).
``LedgerAccess`` adds who may do what (both API adapters call it);
``PaymentRelay`` carries payments between nodes, ``AwardEscrow`` pays
contract-net awards and ``LedgerTeamEscrow`` holds team budgets.
"""

from coral.ledger.access import Caller, LedgerAccess
from coral.ledger.audit import find_violations
from coral.ledger.awards import AwardEscrow
from coral.ledger.conditional import (
    PathHop,
    PreparedPath,
    condition_for,
    conditional_transfer,
    fulfil_path,
    fulfil_transfer,
    prepare_path,
)
from coral.ledger.errors import LedgerError
from coral.ledger.model import (
    AMOUNT_MAX,
    Account,
    AccountFlags,
    AccountKind,
    AccountResult,
    HistoryEntry,
    LedgerChanges,
    PendingStatus,
    Resolution,
    Transfer,
    TransferFlags,
    TransferResult,
)
from coral.ledger.ports import FederationOutbox, LedgerStore, LedgerTransaction, TransactionFactory
from coral.ledger.receipts import RECEIPT_DOMAIN, Receipt, issue_receipt, verify_receipt
from coral.ledger.relay import PaymentRelay
from coral.ledger.service import LedgerService, TransferOutcome, operator_account_id
from coral.ledger.state import LedgerState
from coral.ledger.team_escrow import LedgerTeamEscrow

__all__ = [
    "AMOUNT_MAX",
    "RECEIPT_DOMAIN",
    "Account",
    "AccountFlags",
    "AccountKind",
    "AccountResult",
    "AwardEscrow",
    "Caller",
    "FederationOutbox",
    "HistoryEntry",
    "LedgerAccess",
    "LedgerChanges",
    "LedgerError",
    "LedgerService",
    "LedgerState",
    "LedgerStore",
    "LedgerTeamEscrow",
    "LedgerTransaction",
    "PathHop",
    "PaymentRelay",
    "PendingStatus",
    "PreparedPath",
    "Receipt",
    "Resolution",
    "TransactionFactory",
    "Transfer",
    "TransferFlags",
    "TransferOutcome",
    "TransferResult",
    "condition_for",
    "conditional_transfer",
    "find_violations",
    "fulfil_path",
    "fulfil_transfer",
    "issue_receipt",
    "operator_account_id",
    "prepare_path",
    "verify_receipt",
]
